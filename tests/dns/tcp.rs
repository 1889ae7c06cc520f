//! TCP: several queries per connection, pipelining, idle timeouts, lying length prefixes,
//! the connection cap, and kdig over one kept-open connection.

use super::*;

/// Reads one length-prefixed message; `None` if the connection closes first.
fn read_framed(c: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut body).ok()?;
    Some(body)
}

#[test]
fn tcp_carries_several_queries_per_connection_and_idle_ones_close() {
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--tcp-idle-timeout", "1"])
        .start();
    let name = format!("{KUBIA_SET}.");
    let replies = tcp_messages(
        s.dns,
        &[
            query(21, &name, RecordType::A, None),
            query(22, &name, RecordType::SRV, None),
            query(
                23,
                "kubia-0.kubia.default.svc.cluster.local.",
                RecordType::A,
                None,
            ),
        ],
    );
    let mut ids: Vec<u16> = replies.iter().map(|r| r.metadata.id).collect();
    ids.sort();
    assert_eq!(ids, [21, 22, 23]);
    for r in &replies {
        let want = match r.metadata.id {
            23 => 1,
            _ => 2,
        };
        assert_eq!(r.answers.len(), want, "{r:?}");
    }
    // An idle connection is closed by the server after --tcp-idle-timeout.
    let mut conn = std::net::TcpStream::connect(s.dns).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut conn, &mut buf);
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "expected the server to close: {n:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        started.elapsed()
    );
}

/// What one read brings is answered in one go: pipelined questions come back in the order
/// asked, the hickory path (ANY) included, and a message split anywhere, even inside its length
/// prefix, is answered once it is whole.
#[test]
fn tcp_pipelined_and_split_messages_are_answered_in_order() {
    use std::io::{Read, Write};
    let s = Options::new(&[&example("kubia.yaml")]).start();
    let pod = "kubia-0.kubia.default.svc.cluster.local.";
    let kinds = [
        RecordType::A,
        RecordType::ANY,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::AAAA,
    ];
    let asked: Vec<Message> = (0..20u16)
        .map(|i| {
            let name = if i % 2 == 0 {
                pod.to_string()
            } else {
                format!("{KUBIA_SET}.")
            };
            query(100 + i, &name, kinds[i as usize % kinds.len()], None)
        })
        .collect();
    let replies = tcp_messages(s.dns, &asked);
    let ids: Vec<u16> = replies.iter().map(|r| r.metadata.id).collect();
    assert_eq!(ids, (100..120).collect::<Vec<u16>>(), "in the order asked");
    for (q, r) in asked.iter().zip(&replies) {
        assert_eq!(r.queries, q.queries, "question echoed");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }

    // One message in three pieces: half the length prefix, then the rest of the prefix with
    // part of the message, then the end.
    let q = query(7, pod, RecordType::A, None).to_vec().unwrap();
    let framed = [&(q.len() as u16).to_be_bytes()[..], &q].concat();
    let mut c = std::net::TcpStream::connect(s.dns).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for piece in [&framed[..1], &framed[1..10], &framed[10..]] {
        c.write_all(piece).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut len = [0u8; 2];
    c.read_exact(&mut len).unwrap();
    let mut body = vec![0; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut body).unwrap();
    let r = Message::from_vec(&body).unwrap();
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.answers.len(), 1, "{r:?}");
}

#[test]
fn tcp_length_prefixes_that_lie_never_stop_the_server() {
    use std::io::{Read, Write};
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--tcp-idle-timeout", "1"])
        .start();
    let q = query(0x4a00, &format!("{KUBIA_SET}."), RecordType::A, None)
        .to_vec()
        .unwrap();
    let connect = || {
        let c = std::net::TcpStream::connect(s.dns).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        c
    };
    let framed = |p: &[u8]| [&(p.len() as u16).to_be_bytes()[..], p].concat();

    // Length 0: an empty message, nothing to answer; the connection goes on.
    let mut c = connect();
    c.write_all(&[&[0, 0][..], &framed(&q)].concat()).unwrap();
    let r = read_framed(&mut c).expect("the query after an empty message is answered");
    assert_eq!((u16::from_be_bytes([r[0], r[1]]), rcode(&r)), (0x4a00, 0));

    // Length 65,535, a real query's worth of bytes, then the client stalls: the server waits
    // at most the idle timeout for the rest, then closes, without a reply.
    let mut c = connect();
    let started = Instant::now();
    c.write_all(&[&[0xff, 0xff][..], &q].concat()).unwrap();
    let mut byte = [0u8; 1];
    let n = c.read(&mut byte);
    assert!(matches!(n, Ok(0) | Err(_)), "closed, no reply: {n:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    // A length larger than what is sent, then the client closes its side: no reply, closed.
    let mut c = connect();
    c.write_all(&[&((q.len() + 100) as u16).to_be_bytes()[..], &q].concat())
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let n = c.read_to_end(&mut rest);
    assert!(matches!(n, Ok(0)) || n.is_err(), "no reply: {n:?} {rest:?}");

    // Half a length prefix, then gone.
    let mut c = connect();
    c.write_all(&[0x01]).unwrap();
    drop(c);

    assert_still_answering(&s);
}

#[test]
fn slow_tcp_clients_are_closed_by_the_idle_timeout_and_others_are_served() {
    // Five clients each trickle a query one byte a second (a "slowloris"). Each read of the
    // server (the length, then the message) must complete within --tcp-idle-timeout, so a
    // trickling client is closed after a few seconds however steadily it sends; meanwhile
    // other clients are answered over UDP and TCP.
    use std::io::{Read, Write};
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--tcp-idle-timeout", "2"])
        .start();
    let q = query(0x4b00, &format!("{KUBIA_SET}."), RecordType::A, None)
        .to_vec()
        .unwrap();
    let framed = [&(q.len() as u16).to_be_bytes()[..], &q].concat();
    let mut slow: Vec<(std::net::TcpStream, Option<Duration>)> = (0..5)
        .map(|_| {
            let c = std::net::TcpStream::connect(s.dns).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            (c, None)
        })
        .collect();
    let started = Instant::now();
    let mut served = 0;
    for second in 0..framed.len() {
        for (c, closed) in slow.iter_mut().filter(|(_, closed)| closed.is_none()) {
            let mut buf = [0u8; 64];
            let gone = c.write_all(&framed[second..second + 1]).is_err()
                || match c.read(&mut buf) {
                    Ok(0) => true,
                    Ok(n) => panic!("a slow client got {n} bytes back: {:?}", &buf[..n]),
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                };
            if gone {
                *closed = Some(started.elapsed());
            }
        }
        if slow.iter().all(|(_, closed)| closed.is_some()) {
            break;
        }
        // Everyone else is served meanwhile.
        assert_still_answering(&s);
        served += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let closed: Vec<Duration> = slow.iter().filter_map(|(_, c)| *c).collect();
    assert_eq!(closed.len(), 5, "every slow client is closed: {closed:?}");
    // The length arrives within the timeout, the message never does: closed after about
    // 1 s + 2 s; the bound leaves room for a loaded machine.
    assert!(
        closed.iter().all(|d| *d < Duration::from_secs(10)),
        "closed after {closed:?}"
    );
    assert!(
        served >= 2,
        "others were served while the slow clients held on"
    );
}

#[test]
fn tcp_connection_cap_closes_the_longest_idle_connection() {
    use std::io::{Read, Write};
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--tcp-max-connections", "2", "--tcp-idle-timeout", "30"])
        .start();
    let connect = || {
        let c = std::net::TcpStream::connect(s.dns).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c
    };
    let ask = |c: &mut std::net::TcpStream, id: u16| -> Message {
        let q = query(
            id,
            "kubia-0.kubia.default.svc.cluster.local.",
            RecordType::A,
            None,
        )
        .to_vec()
        .unwrap();
        c.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat())
            .unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut body = vec![0; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut body).unwrap();
        Message::from_vec(&body).unwrap()
    };
    // Two clients hold connections open, the first idle the longest.
    let mut first = connect();
    assert_eq!(ask(&mut first, 1).answers.len(), 1);
    std::thread::sleep(Duration::from_millis(50));
    let mut second = connect();
    assert_eq!(ask(&mut second, 2).answers.len(), 1);
    // A third client is not locked out: the longest-idle connection makes room.
    let mut third = connect();
    assert_eq!(ask(&mut third, 3).answers.len(), 1);
    let mut byte = [0u8; 1];
    assert!(
        matches!(first.read(&mut byte), Ok(0)),
        "the longest-idle connection is closed"
    );
    assert_eq!(
        ask(&mut second, 4).answers.len(),
        1,
        "the other one keeps working"
    );
    // The metrics say what happened.
    let m = |series: &str| {
        s.metric(series)
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    assert_eq!(m("petdns_dns_tcp_connections_accepted_total"), 3.0);
    assert_eq!(m("petdns_dns_tcp_connections_closed_at_cap_total"), 1.0);
    assert_eq!(m("petdns_dns_tcp_connections_refused_total"), 0.0);
    assert_eq!(m("petdns_dns_tcp_connections_open"), 2.0);
}

/// Knot's `kdig`, a second independent client: over UDP, and over one TCP connection kept
/// open for several questions (`+keepopen`), each answered in order with the records dig
/// sees.
#[test]
fn kdig_over_udp_and_one_kept_open_tcp_connection() {
    let s = Options::new(&[&example("web.yaml")]).start();
    let kdig = |args: &[&str]| -> String {
        let out = std::process::Command::new("kdig")
            .args([
                &format!("@{}", s.dns.ip()),
                "-p",
                &s.dns.port().to_string(),
                "+norec",
                "+time=2",
                "+retry=0",
            ])
            .args(args)
            .output()
            .expect("run kdig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let service = "nginx.default.svc.cluster.local.";
    let (pod0, pod1) = (
        "web-0.nginx.default.svc.cluster.local.",
        "web-1.nginx.default.svc.cluster.local.",
    );
    // UDP, one question.
    let udp = kdig(&["+short", "-q", service, "-t", "A"]);
    let mut got: Vec<&str> = udp.lines().collect();
    got.sort();
    assert_eq!(got, ["192.0.2.1", "192.0.2.2"], "kdig over UDP:\n{udp}");

    // TCP: three questions on one connection.
    let accepted = s
        .metric("petdns_dns_tcp_connections_accepted_total")
        .unwrap();
    let tcp = kdig(&[
        "+tcp",
        "+keepopen",
        "-q",
        service,
        "-t",
        "SRV",
        "-q",
        pod1,
        "-t",
        "TXT",
        "-q",
        pod0,
        "-t",
        "A",
    ]);
    let replies: Vec<&str> = tcp
        .split(";; ->>HEADER<<-")
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(replies.len(), 3, "three replies:\n{tcp}");
    for r in &replies {
        assert!(r.contains("status: NOERROR"), "{r}");
        assert!(r.contains(";; Flags: qr aa;"), "authoritative, no RA:\n{r}");
        assert!(r.contains("(TCP)"), "over TCP:\n{r}");
    }
    let records = |r: &str| -> Vec<String> {
        // The first line is the rest of the header line the replies were split at.
        r.lines()
            .skip(1)
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        records(replies[0]),
        [
            format!("{service} 5 IN SRV 0 50 80 {pod0}"),
            format!("{service} 5 IN SRV 0 50 80 {pod1}"),
            format!("{pod0} 5 IN A 192.0.2.1"),
            format!("{pod1} 5 IN A 192.0.2.2"),
        ],
        "SRV with the targets' addresses as glue:\n{}",
        replies[0]
    );
    let txt = records(replies[1]);
    assert_eq!(txt.len(), 1, "{}", replies[1]);
    assert!(
        txt[0].starts_with(&format!(
            "{pod1} 5 IN TXT \"ordinal=1\" \"set=web\" \"state=Ready\""
        )),
        "{}",
        replies[1]
    );
    assert_eq!(records(replies[2]), [format!("{pod0} 5 IN A 192.0.2.1")]);
    let accepted_after = s
        .metric("petdns_dns_tcp_connections_accepted_total")
        .unwrap();
    assert_eq!(
        accepted_after - accepted,
        1.0,
        "+keepopen asks all three on one connection"
    );
}
