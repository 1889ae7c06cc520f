//! Wire behaviour: EDNS, 0x20 case, truncation, FORMERR, NOTIMP and BADVERS, with dig, hand-built
//! packets and hickory's client.

use super::*;

#[test]
fn edns_is_echoed_with_the_payload_capped_at_1232() {
    let s = kubia();
    let d = s.dig(&["+bufsize=4096", "A", KUBIA_SET]);
    let edns = d
        .edns
        .clone()
        .unwrap_or_else(|| panic!("no OPT in the response\n{d}"));
    assert!(edns.contains("version: 0"), "{d}");
    assert!(edns.contains("udp: 1232"), "{d}");
    let d = s.dig(&["+bufsize=800", "A", KUBIA_SET]);
    assert!(d.edns.as_deref().unwrap_or("").contains("udp: 800"), "{d}");
    let d = s.dig(&["+noedns", "A", KUBIA_SET]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert!(d.edns.is_none(), "no OPT when the client sent none\n{d}");

    // The same with hand-built packets.
    let r = udp_message(
        s.dns,
        &query(7, &format!("{KUBIA_SET}."), RecordType::A, Some(4096)),
    );
    assert_eq!(
        r.edns.as_ref().map(|e| e.max_payload()),
        Some(1232),
        "{r:?}"
    );
    let r = udp_message(
        s.dns,
        &query(8, &format!("{KUBIA_SET}."), RecordType::A, None),
    );
    assert!(r.edns.is_none(), "{r:?}");
}

#[tokio::test]
async fn question_case_is_echoed_and_answers_use_it() {
    let s = kubia();
    let mixed = "KuBiA-0.kUbIa.DeFaUlT.SvC.CLUSTER.local.";
    let d = s.dig(&["A", mixed]);
    assert_eq!(d.question, [mixed], "{d}");
    assert_eq!(d.answer.len(), 1, "{d}");
    assert_eq!(d.answer[0].name, mixed, "owner in the query's case\n{d}");
    let soa = s.dig(&["MX", mixed]).assert_negative("NOERROR");
    assert_eq!(
        soa.name, "CLUSTER.local.",
        "zone in the query's case: {soa:?}"
    );

    // hickory's client over UDP checks the echo itself (0x20 randomisation).
    let udp = client::udp(s.dns);
    let mut options = DnsRequestOptions::default();
    options.case_randomization = true;
    for _ in 0..5 {
        let r = udp
            .lookup(
                Query::query(
                    Name::from_ascii(format!("{KUBIA_SET}.")).unwrap(),
                    RecordType::SRV,
                ),
                options,
            )
            .first_answer()
            .await
            .unwrap_or_else(|e| panic!("0x20 query failed: {e}\n{}", s.log_dump()));
        assert_eq!(r.answers.len(), 2, "{r:?}");
    }
    // And a mixed-case name sent as is keeps its case in question and answers.
    let r = udp_message(s.dns, &query(9, mixed, RecordType::A, Some(1232)));
    assert_eq!(r.queries[0].name().to_ascii(), mixed);
    assert_eq!(r.answers[0].name.to_ascii(), mixed);
}

#[tokio::test]
async fn hickory_client_over_udp_and_tcp() {
    let s = kubia();
    let name = Name::from_ascii(format!("{KUBIA_SET}.")).unwrap();
    let pod = Name::from_ascii("kubia-1.kubia.default.svc.cluster.local.").unwrap();
    let mut udp = client::udp(s.dns);
    let mut tcp = client::tcp(s.dns).await;
    for (proto, c) in [("udp", &mut udp), ("tcp", &mut tcp)] {
        let r = c
            .query(name.clone(), DNSClass::IN, RecordType::A)
            .await
            .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(r.metadata.authoritative, "{proto}");
        let mut addrs: Vec<String> = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        addrs.sort();
        assert_eq!(addrs, ["192.0.2.1", "192.0.2.2"], "{proto}: {r:?}");

        let r = c
            .query(name.clone(), DNSClass::IN, RecordType::SRV)
            .await
            .unwrap();
        let mut srv: Vec<String> = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::SRV(s) => Some(format!(
                    "{} {} {} {}",
                    s.priority, s.weight, s.port, s.target
                )),
                _ => None,
            })
            .collect();
        srv.sort();
        assert_eq!(
            srv,
            [
                "0 50 80 kubia-0.kubia.default.svc.cluster.local.",
                "0 50 80 kubia-1.kubia.default.svc.cluster.local.",
            ],
            "{proto}: {r:?}"
        );
        assert_eq!(r.additionals.len(), 2, "{proto}: glue {r:?}");

        let r = c
            .query(pod.clone(), DNSClass::IN, RecordType::A)
            .await
            .unwrap();
        assert_eq!(r.answers.len(), 1, "{proto}: {r:?}");
        let r = c
            .query(
                Name::from_ascii("kubia-7.kubia.default.svc.cluster.local.").unwrap(),
                DNSClass::IN,
                RecordType::A,
            )
            .await
            .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{proto}");
        assert_eq!(r.authorities.len(), 1, "{proto}: SOA {r:?}");
    }
}

#[tokio::test]
async fn large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let s = Server::new(&[&fixture("big.yaml")]);
    let name = "big.default.svc.cluster.local.";
    // Without EDNS the limit is 512 bytes: 10 SRV records (about 600 bytes) do not fit.
    let q = query(11, name, RecordType::SRV, None);
    let reply = udp_exchange(s.dns, &q.to_vec().unwrap(), Duration::from_secs(2)).expect("reply");
    assert!(
        reply.len() <= 512,
        "UDP reply of {} bytes without EDNS",
        reply.len()
    );
    let r = Message::from_vec(&reply).unwrap();
    assert!(r.metadata.truncation, "TC must be set: {r:?}");
    assert!(r.answers.len() < 10, "whole RRsets only: {r:?}");
    // Over TCP the whole answer and its glue.
    let mut tcp = client::tcp(s.dns).await;
    let r = tcp
        .query(
            Name::from_ascii(name).unwrap(),
            DNSClass::IN,
            RecordType::SRV,
        )
        .await
        .unwrap();
    assert!(!r.metadata.truncation, "{r:?}");
    assert_eq!(r.answers.len(), 10, "{r:?}");
    assert_eq!(r.additionals.len(), 10, "{r:?}");
    assert!(
        r.answers
            .iter()
            .all(|a| matches!(&a.data, RData::SRV(s) if s.weight == 10 && s.port == 8080)),
        "{r:?}"
    );
    // With EDNS (the client's 4096, capped at 1232) it fits over UDP.
    let reply = udp_exchange(
        s.dns,
        &query(12, name, RecordType::SRV, Some(4096))
            .to_vec()
            .unwrap(),
        Duration::from_secs(2),
    )
    .expect("reply");
    assert!(reply.len() <= 1232, "{} bytes", reply.len());
    let r = Message::from_vec(&reply).unwrap();
    assert!(!r.metadata.truncation, "{r:?}");
    assert_eq!((r.answers.len(), r.additionals.len()), (10, 10), "{r:?}");
    // dig retries over TCP by itself when TC is set.
    let d = s.dig(&["+noedns", "SRV", name]);
    assert!(d.raw.contains("Truncated, retrying in TCP mode"), "{d}");
    assert!(!d.tc(), "{d}");
    assert_eq!(d.answers("SRV").len(), 10, "{d}");
    assert_eq!(d.glue().len(), 10, "{d}");
}

#[test]
fn malformed_queries_get_formerr_or_nothing() {
    let s = kubia();
    let q = (KUBIA_SET, 1u16);
    // No question.
    let r = udp_exchange(
        s.dns,
        &raw_packet(0x1234, 0, &[], None),
        Duration::from_secs(2),
    )
    .expect("FORMERR for QDCOUNT 0");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{m:?}");
    // Two questions.
    let r = udp_exchange(
        s.dns,
        &raw_packet(0x1235, 0, &[q, q], None),
        Duration::from_secs(2),
    )
    .expect("FORMERR for QDCOUNT 2");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.id, 0x1235);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{m:?}");
    // A header cut short: no header to answer, so no reply at all.
    let full = raw_packet(0x1236, 0, &[q], None);
    assert_eq!(
        udp_exchange(s.dns, &full[..7], Duration::from_millis(500)),
        None,
        "a truncated header gets no reply"
    );
    // Garbage after a full header: FORMERR or silence, never a crash.
    let mut garbage = full[..12].to_vec();
    garbage.extend_from_slice(&[63, b'x', 0xff]);
    let _ = udp_exchange(s.dns, &garbage, Duration::from_millis(500));
    // The server keeps answering, over UDP and TCP.
    let r = udp_message(
        s.dns,
        &query(13, &format!("{KUBIA_SET}."), RecordType::A, None),
    );
    assert_eq!(r.answers.len(), 2, "{}", s.log_dump());
    let mut tcp = std::net::TcpStream::connect(s.dns).unwrap();
    std::io::Write::write_all(&mut tcp, &[0, 5, 1, 2, 3]).unwrap();
    drop(tcp);
    let r = tcp_messages(
        s.dns,
        &[query(14, &format!("{KUBIA_SET}."), RecordType::A, None)],
    );
    assert_eq!(r[0].answers.len(), 2);
}

#[test]
fn unknown_opcode_is_notimp() {
    let s = kubia();
    for opcode in [3u16, 2, 15] {
        let packet = raw_packet(0x2000 + opcode, opcode << 11, &[(KUBIA_SET, 1)], None);
        let r = udp_exchange(s.dns, &packet, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("no reply to opcode {opcode}\n{}", s.log_dump()));
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.id, 0x2000 + opcode);
        assert_eq!(m.metadata.op_code, OpCode::from_u8(opcode as u8), "{m:?}");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}: {m:?}"
        );
    }
}

#[test]
fn edns_version_1_is_badvers() {
    let s = kubia();
    let packet = raw_packet(0x3000, 0, &[(KUBIA_SET, 1)], Some((1232, 1)));
    let r = udp_exchange(s.dns, &packet, Duration::from_secs(2)).expect("a reply");
    let m = Message::from_vec(&r).unwrap();
    // Extended RCODE 16 (BADVERS; hickory decodes 16 as BADSIG, which shares the value).
    assert_eq!(u16::from(m.metadata.response_code), 16, "{m:?}");
    assert_eq!(m.metadata.id, 0x3000);
    let edns = m.edns.as_ref().expect("BADVERS travels in an OPT record");
    assert_eq!(edns.version(), 0, "we answer with the version we support");
    assert!(m.answers.is_empty());
    let d = s.dig(&["+edns=1", "+noednsnegotiation", "A", KUBIA_SET]);
    assert_eq!(d.status, "BADVERS", "{d}");
}

#[test]
fn regression_glue_that_does_not_fit_is_left_out_without_tc() {
    // RFC 2181 section 9: TC means required data is missing. Seven SRV records fit in 512
    // bytes but their glue does not: the answer goes out whole, without glue and without TC,
    // so clients do not retry over TCP for data they can ask for separately.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mid.yaml");
    let text = read(&fixture("big.yaml"))
        .replace("name: big", "name: mid")
        .replace("app: big", "app: mid")
        .replace("serviceName: big", "serviceName: mid")
        .replace("replicas: 10", "replicas: 7");
    std::fs::write(&path, text).unwrap();
    let s = Server::new(&[&path]);
    let d = s.dig(&[
        "+noedns",
        "+ignore",
        "SRV",
        "mid.default.svc.cluster.local.",
    ]);
    assert!(!d.tc(), "{d}");
    assert_eq!(d.answers("SRV").len(), 7, "{d}");
    assert!(d.glue().is_empty(), "glue is all or nothing: {d}");
    // With EDNS it all fits.
    let d = s.dig(&["SRV", "mid.default.svc.cluster.local."]);
    assert_eq!((d.answers("SRV").len(), d.glue().len()), (7, 7), "{d}");
}
