//! Hostile and malformed traffic: RFC answers, and the server keeps answering everyone else.

use super::*;

/// A name in wire form.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Asserts that every packet (sent with ids from `first`) gets FORMERR over UDP, echoing its
/// id, with no answer or authority records (a question that could be read may be echoed).
#[track_caller]
fn assert_formerr_udp(s: &Server, first: u16, packets: &[Vec<u8>], what: &str) {
    let replies = udp_burst(s.dns, packets, Duration::from_secs(1));
    for (i, _) in packets.iter().enumerate() {
        let id = first + i as u16;
        let r = replies
            .get(&id)
            .unwrap_or_else(|| panic!("{what} #{i}: no reply\n{}", s.log_dump()));
        assert!(r.len() >= 12 && r[2] & 0x80 != 0, "{what} #{i}: {r:?}");
        assert_eq!(rcode(r), 1, "{what} #{i}: FORMERR expected, got {r:?}");
        assert_eq!(&r[6..10], [0, 0, 0, 0], "{what} #{i}: no records: {r:?}");
    }
}

/// A tiny seeded generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_datagrams_never_stop_the_server_nor_get_reflected() {
    let s = kubia();
    let seed = 0x5eed_0f9e_77aa_u64;
    let mut rng = Rng(seed);
    let plain: Vec<Vec<u8>> = [
        (KUBIA_SET, RecordType::A, None),
        (
            "kubia-0.kubia.default.svc.cluster.local.",
            RecordType::TXT,
            Some(1232),
        ),
        (
            "_http._tcp.kubia.default.svc.cluster.local.",
            RecordType::SRV,
            Some(4096),
        ),
        ("nope.cluster.local.", RecordType::AAAA, None),
        ("1.0.2.192.in-addr.arpa.", RecordType::PTR, Some(512)),
        ("example.org.", RecordType::ANY, None),
    ]
    .iter()
    .map(|(n, t, e)| {
        let n = if n.ends_with('.') {
            n.to_string()
        } else {
            format!("{n}.")
        };
        query(0, &n, *t, *e).to_vec().unwrap()
    })
    .collect();
    let mut packets = Vec::new();
    for _ in 0..3000 {
        let mut p = match rng.below(3) {
            // Noise of any length, up to a little over the largest response.
            0 => {
                let n = rng.below(1300) as usize;
                rng.bytes(n)
            }
            // A plausible header (QUERY, one question, a few records), then noise.
            1 => {
                let counts = [
                    1,
                    rng.below(2) as u16,
                    rng.below(2) as u16,
                    rng.below(3) as u16,
                ];
                let n = rng.below(300) as usize;
                [header(0, counts), rng.bytes(n)].concat()
            }
            // A real question with a few bytes changed.
            _ => {
                let mut p = plain[rng.below(plain.len() as u64) as usize].clone();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(p.len() as u64) as usize;
                    p[at] = rng.next() as u8;
                }
                p
            }
        };
        // Ids say whether a reply may come: 0x8000 and up for datagrams that must get none (no
        // whole header, or a response: answering those would reflect).
        if p.len() >= 2 {
            let silent = p.len() < 12 || p[2] & 0x80 != 0;
            let id = (rng.next() as u16 & 0x7fff) | if silent { 0x8000 } else { 0 };
            p[..2].copy_from_slice(&id.to_be_bytes());
        }
        packets.push(p);
    }
    let mut replies = 0;
    for chunk in packets.chunks(500) {
        for (id, r) in udp_burst(s.dns, chunk, Duration::from_millis(300)) {
            replies += 1;
            assert!(
                id < 0x8000,
                "seed {seed:#x}: a reply to a response or a runt: {r:?}"
            );
            assert!(r.len() >= 12 && r[2] & 0x80 != 0, "seed {seed:#x}: {r:?}");
        }
    }
    assert!(replies > 100, "seed {seed:#x}: only {replies} replies");
    assert_still_answering(&s);
}

#[test]
fn truncated_headers_get_nothing_and_truncated_questions_formerr() {
    let s = kubia();
    let full = query(0x4000, &format!("{KUBIA_SET}."), RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    // Less than a header: nothing to answer, no reply at all.
    let runts: Vec<Vec<u8>> = (0..12).map(|n| full[..n].to_vec()).collect();
    let replies = udp_burst(s.dns, &runts, Duration::from_secs(1));
    assert!(replies.is_empty(), "{replies:?}");
    // A whole header and a part of the question or of the OPT record: FORMERR, with the id.
    let cuts: Vec<Vec<u8>> = (12..full.len())
        .map(|n| {
            let mut p = full[..n].to_vec();
            p[..2].copy_from_slice(&(0x4100 + n as u16).to_be_bytes());
            p
        })
        .collect();
    assert_formerr_udp(&s, 0x4100 + 12, &cuts, "cut");
    // Over TCP, on one connection: a runt gets nothing, each cut FORMERR, in order, and the
    // connection goes on to answer the whole query.
    let mut c = std::net::TcpStream::connect(s.dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for p in [&full[..7], &cuts[3][..], &cuts[30][..], &full[..]] {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    std::io::Write::write_all(&mut c, &out).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut c, &mut len).unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        std::io::Read::read_exact(&mut c, &mut body).unwrap();
        got.push((u16::from_be_bytes([body[0], body[1]]), rcode(&body)));
    }
    assert_eq!(
        got,
        [(0x4100 + 15, 1), (0x4100 + 42, 1), (0x4000, 0)],
        "FORMERR, FORMERR, the answer"
    );
    assert_still_answering(&s);
}

#[test]
fn qdcount_that_does_not_match_the_questions_is_formerr() {
    let s = kubia();
    let question = [wire_name(KUBIA_SET), vec![0, 1, 0, 1]].concat();
    let packets = [
        // QDCOUNT 2, one question.
        [header(0x4300, [2, 0, 0, 0]), question.clone()].concat(),
        // QDCOUNT 0, a question all the same.
        [header(0x4301, [0, 0, 0, 0]), question.clone()].concat(),
        // QDCOUNT 0, nothing else (RFC 9619: FORMERR for a QUERY without a question).
        header(0x4302, [0, 0, 0, 0]),
        // QDCOUNT 3, three questions.
        [header(0x4303, [3, 0, 0, 0]), question.repeat(3)].concat(),
    ];
    assert_formerr_udp(&s, 0x4300, &packets, "qdcount");
    assert_still_answering(&s);
}

#[test]
fn compression_pointer_loops_are_formerr() {
    let s = kubia();
    let tail = [0u8, 1, 0, 1]; // A, IN
    let packets = [
        // The question's name is a pointer to itself.
        [header(0x4400, [1, 0, 0, 0]), vec![0xC0, 12], tail.to_vec()].concat(),
        // Two pointers to each other (offset 12 -> 14 -> 12).
        [
            header(0x4401, [1, 0, 0, 0]),
            vec![0xC0, 14, 0xC0, 12],
            tail.to_vec(),
        ]
        .concat(),
        // A label, then a pointer back to that label: an endless name.
        [
            header(0x4402, [1, 0, 0, 0]),
            vec![1, b'a', 0xC0, 12],
            tail.to_vec(),
        ]
        .concat(),
        // A pointer forward, into the bytes after the question.
        [
            header(0x4403, [1, 0, 0, 0]),
            vec![0xC0, 18],
            tail.to_vec(),
            wire_name("x."),
        ]
        .concat(),
        // A pointer past the end of the message.
        [
            header(0x4404, [1, 0, 0, 0]),
            vec![0xFF, 0xFF],
            tail.to_vec(),
        ]
        .concat(),
        // A good question, then an additional record whose owner points at itself.
        [
            header(0x4405, [1, 0, 0, 1]),
            wire_name(KUBIA_SET),
            tail.to_vec(),
            vec![0xC0, 49, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 1],
        ]
        .concat(),
    ];
    assert_eq!(
        wire_name(KUBIA_SET).len() + 12 + 4,
        49,
        "the record's own offset"
    );
    assert_formerr_udp(&s, 0x4400, &packets, "pointer");
    assert_still_answering(&s);
}

#[test]
fn labels_over_63_bytes_are_formerr() {
    // Length bytes 64..=191 are not labels: 0x40 is the extended label type RFC 6891 retired,
    // 0x80 reserved, and neither is a pointer (0xC0).
    let s = kubia();
    let packets: Vec<Vec<u8>> = [64u8, 65, 100, 127, 128, 191]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            [
                header(0x4500 + i as u16, [1, 0, 0, 0]),
                vec![len],
                vec![b'a'; len as usize],
                wire_name("cluster.local."),
                vec![0, 1, 0, 1],
            ]
            .concat()
        })
        .collect();
    assert_formerr_udp(&s, 0x4500, &packets, "label");
    assert_still_answering(&s);
}

#[test]
fn names_over_255_bytes_are_formerr() {
    let s = kubia();
    // Three 63-byte labels, then one of `last` bytes, then cluster.local: 255 bytes in wire
    // form for last = 47 (RFC 1035 section 3.1: the most a name may have), 256 for 48.
    let long = |last: usize| -> Vec<u8> {
        let mut n = Vec::new();
        for _ in 0..3 {
            n.push(63);
            n.extend_from_slice(&[b'a'; 63]);
        }
        n.push(last as u8);
        n.extend(std::iter::repeat_n(b'b', last));
        n.extend(wire_name("cluster.local."));
        n
    };
    assert_eq!(long(47).len(), 255);
    let at_limit = [header(0x4600, [1, 0, 0, 0]), long(47), vec![0, 1, 0, 1]].concat();
    let r = udp_exchange(s.dns, &at_limit, Duration::from_secs(2)).expect("a reply");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert!(m.metadata.authoritative, "{m:?}");
    let over: Vec<Vec<u8>> = [
        long(48),
        // Five 63-byte labels: 321 bytes.
        [vec![63], vec![b'c'; 63]]
            .concat()
            .repeat(5)
            .into_iter()
            .chain([0])
            .collect(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, name)| {
        [
            header(0x4610 + i as u16, [1, 0, 0, 0]),
            name,
            vec![0, 1, 0, 1],
        ]
        .concat()
    })
    .collect();
    assert_formerr_udp(&s, 0x4610, &over, "long name");
    assert_still_answering(&s);
}

#[test]
fn other_classes_are_refused_and_never_forwarded() {
    // Knot answers CH only for id.server and version.bind, treats QCLASS ANY as IN and refuses
    // every other class; CoreDNS's kubernetes plugin answers class IN only. petdns has data in
    // class IN only and no CHAOS names: every other class (CH, HS, NONE, ANY, unassigned) is
    // REFUSED, without AA or RA, and never sent upstream (a class petdns does not serve is not
    // a name it does not own). The upstream here is a port where nothing listens, so a
    // forwarded question would come back SERVFAIL.
    let plain = kubia();
    let forwarding = Options::new(&[&example("kubia.yaml")])
        .args(&["--forward", "127.0.0.1:9"])
        .start();
    for s in [&plain, &forwarding] {
        for (i, (name, class)) in [
            (KUBIA_SET, 3u16), // CH
            ("version.bind", 3),
            (KUBIA_SET, 4),   // HS
            (KUBIA_SET, 254), // NONE
            (KUBIA_SET, 255), // ANY
            ("example.org", 255),
            (KUBIA_SET, 42),
        ]
        .into_iter()
        .enumerate()
        {
            let id = 0x4700 + i as u16;
            let mut p = raw_packet(id, 0x0100, &[(name, 16)], None); // TXT, RD set
            let at = p.len() - 2;
            p[at..].copy_from_slice(&class.to_be_bytes());
            let r = udp_exchange(s.dns, &p, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("class {class}: no reply\n{}", s.log_dump()));
            let m = Message::from_vec(&r).unwrap();
            assert_eq!(m.metadata.id, id);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::Refused,
                "class {class}: {m:?}"
            );
            assert!(
                !m.metadata.authoritative && !m.metadata.recursion_available,
                "{m:?}"
            );
            assert!(m.metadata.recursion_desired, "RD echoed: {m:?}");
            assert!(m.answers.is_empty() && m.authorities.is_empty(), "{m:?}");
            assert_eq!(m.queries.len(), 1, "the question echoed: {m:?}");
            assert_eq!(u16::from(m.queries[0].query_class()), class, "{m:?}");
        }
    }
    assert_eq!(forwarding.metric("petdns_dns_forwarded_total"), Some(0.0));
    assert_still_answering(&plain);
}

#[test]
fn recursion_desired_outside_the_zones_is_refused_without_ra() {
    // No open recursion: without --forward a name outside the zones is REFUSED even when the
    // client asks for recursion (RD=1), and RA is never set.
    let s = kubia();
    for (i, name) in ["example.org", "com", "cluster.local.example.org"]
        .into_iter()
        .enumerate()
    {
        let id = 0x4800 + i as u16;
        for p in [
            raw_packet(id, 0x0100, &[(name, 1)], None),
            raw_packet(id, 0x0100, &[(name, 1)], Some((1232, 0))),
        ] {
            let m = Message::from_vec(&udp_exchange(s.dns, &p, Duration::from_secs(2)).unwrap())
                .unwrap();
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::Refused,
                "{name}: {m:?}"
            );
            assert!(m.metadata.recursion_desired, "{m:?}");
            assert!(!m.metadata.recursion_available, "no RA: {m:?}");
            assert!(!m.metadata.authoritative, "{m:?}");
            assert!(m.answers.is_empty() && m.authorities.is_empty(), "{m:?}");
        }
    }
    let d = s.dig(&["+rec", "A", "example.org"]);
    assert_eq!(d.status, "REFUSED", "{d}");
    assert!(!d.flags.iter().any(|f| f == "ra"), "{d}");
}

/// Regression: hickory's parser ignores bytes after the last record, so a question followed by
/// junk was answered as if the junk were not there, although the fast path (rightly) would not
/// touch it. Such a message does not conform to RFC 1035 section 4.1; Knot answers FORMERR.
#[test]
fn regression_bytes_after_the_last_record_were_ignored() {
    let s = kubia();
    let q = query(0x4900, &format!("{KUBIA_SET}."), RecordType::A, None)
        .to_vec()
        .unwrap();
    let with_opt = query(0x4901, &format!("{KUBIA_SET}."), RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let packets = [
        [q.clone(), vec![0]].concat(),
        [with_opt.clone(), b"junk".to_vec()].concat(),
    ];
    assert_formerr_udp(&s, 0x4900, &packets, "trailing");
    // Over TCP: a 65,535-byte message that is a question and zeros.
    let mut big = q.clone();
    big.resize(65535, 0);
    let mut c = std::net::TcpStream::connect(s.dns).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut c, &[&[0xff, 0xff][..], &big].concat()).unwrap();
    let mut len = [0u8; 2];
    std::io::Read::read_exact(&mut c, &mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    std::io::Read::read_exact(&mut c, &mut body).unwrap();
    assert_eq!((body.len(), rcode(&body)), (12, 1), "FORMERR: {body:?}");
    assert_still_answering(&s);
}
