//! Response-rate limiting for UDP (`--rrl-*`).

use super::*;

/// `n` plain questions for the kubia Service with ids 0..n: the fast path's A, and every tenth
/// one an ANY, which takes the hickory path.
fn kubia_burst(n: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|id| {
            let t = if id % 10 == 9 {
                RecordType::ANY
            } else {
                RecordType::A
            };
            query(id, &format!("{KUBIA_SET}."), t, Some(1232))
                .to_vec()
                .unwrap()
        })
        .collect()
}

#[test]
fn rrl_is_off_by_default() {
    let s = kubia();
    let replies = udp_burst(s.dns, &kubia_burst(200), Duration::from_secs(1));
    let full = replies
        .values()
        .filter(|r| {
            Message::from_vec(r).is_ok_and(|m| !m.metadata.truncation && !m.answers.is_empty())
        })
        .count();
    assert_eq!(full, 200, "{}", s.log_dump());
    assert_eq!(s.metric("petdns_dns_rrl_dropped_total"), Some(0.0));
    assert_eq!(s.metric("petdns_dns_rrl_slipped_total"), Some(0.0));
}

#[test]
fn rrl_limits_udp_per_client_prefix_slips_every_second_and_never_limits_tcp() {
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--rrl-responses-per-second", "20", "--rrl-slip", "2"])
        .start();
    assert_eq!(
        s.messages("response rate limiting on for UDP").len(),
        1,
        "{}",
        s.log_dump()
    );
    let burst = kubia_burst(200);
    let replies = udp_burst(s.dns, &burst, Duration::from_secs(1));
    let mut full = 0;
    let mut slipped = 0;
    for (id, r) in &replies {
        let m = Message::from_vec(r).unwrap_or_else(|e| panic!("reply {id}: {e}: {r:?}"));
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.queries.len(), 1, "the question is always there: {m:?}");
        if m.metadata.truncation {
            // A slip: no records, the OPT kept, so a real client asks again over TCP.
            assert!(m.answers.is_empty() && m.authorities.is_empty(), "{m:?}");
            assert!(m.additionals.is_empty() && m.edns.is_some(), "{m:?}");
            slipped += 1;
        } else {
            assert!(!m.answers.is_empty(), "{m:?}");
            full += 1;
        }
    }
    let dropped = burst.len() - full - slipped;
    eprintln!("a burst of 200 at 20/s: {full} in full, {slipped} slipped, {dropped} dropped");
    // 20 a second with a burst of 20: about 20 answered, plus what refilled while the burst
    // was being answered (one every 50 ms; the bound allows two seconds of a slow machine).
    assert!(
        (20..=60).contains(&full),
        "{full} answered in full\n{}",
        s.log_dump()
    );
    // Of the limited ones, every second one slipped and the others dropped.
    let limited = burst.len() - full;
    assert!(
        slipped.abs_diff(limited / 2) <= 1 && dropped.abs_diff(limited / 2) <= 1,
        "limited {limited}: slipped {slipped}, dropped {dropped}"
    );
    assert_eq!(
        s.metric("petdns_dns_rrl_slipped_total"),
        Some(slipped as f64)
    );
    assert_eq!(
        s.metric("petdns_dns_rrl_dropped_total"),
        Some(dropped as f64)
    );

    // TCP is never limited: 60 questions on one connection, all answered in full, while the
    // UDP bucket of this client is still empty.
    let name = format!("{KUBIA_SET}.");
    let questions: Vec<Message> = (0..60u16)
        .map(|i| query(1000 + i, &name, RecordType::A, Some(1232)))
        .collect();
    for r in tcp_messages(s.dns, &questions) {
        assert!(!r.metadata.truncation && r.answers.len() == 2, "{r:?}");
    }
    // Another client prefix (127.0.1.0/24, still loopback) has a bucket of its own.
    if let Ok(other) = std::net::UdpSocket::bind("127.0.1.1:0") {
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        for (id, q) in kubia_burst(10).iter().enumerate() {
            other.send_to(q, s.dns).unwrap();
            let (n, _) = other
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("other prefix, query {id}: {e}"));
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert!(!m.metadata.truncation && !m.answers.is_empty(), "{m:?}");
        }
    }
    // A second later the client is answered in full again.
    std::thread::sleep(Duration::from_millis(1100));
    let again = udp_burst(s.dns, &kubia_burst(10), Duration::from_secs(1));
    let full_again = again
        .values()
        .filter(|r| {
            Message::from_vec(r).is_ok_and(|m| !m.metadata.truncation && !m.answers.is_empty())
        })
        .count();
    assert_eq!(full_again, 10, "{again:?}");
    // And dig, whose UDP question may be slipped, still gets its answer (over TCP if need be).
    let d = s.dig(&["A", KUBIA_SET]);
    assert_eq!(d.answers("A").len(), 2, "{d}");
}
