//! The integration-test binary: starts the real `petdns serve` on port 0 and queries it with
//! `dig`, hand-built packets and hickory's client. One test per rule of
//! /work/shared/spec/records.md and the embedded-mode rules of identity.md.

mod support;

use std::time::{Duration, Instant};

use hickory_net::DnsHandle;
use hickory_net::client::ClientHandle;
use hickory_net::xfer::FirstAnswer;
use hickory_proto::op::{DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use support::*;

const KUBIA_SET: &str = "kubia.default.svc.cluster.local";

/// A server on the materialised fixtures with distinctive TTLs.
fn materialised() -> Server {
    Options::new(&[&fixture("ports.yaml"), &fixture("leader.yaml")])
        .args(&["--ttl", "11", "--negative-ttl", "7"])
        .start()
}

fn observed() -> Server {
    Server::new(&[&fixture("observed.yaml")])
}

fn kubia() -> Server {
    Server::new(&[&example("kubia.yaml")])
}

// ---------------------------------------------------------------------------------------------
// Names and answers (records.md table)
// ---------------------------------------------------------------------------------------------

#[test]
fn service_a_answers_every_published_identity() {
    let s = materialised();
    let d = s.dig(&["A", "nginx.default.svc.cluster.local"]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert!(d.aa(), "{d}");
    assert_eq!(d.answers("A").len(), 3, "{d}");
    for a in d.answers("A") {
        assert!(
            a.starts_with("192.0.2."),
            "address from --pod-cidr: {a}\n{d}"
        );
    }
    assert!(d.answer.iter().all(|r| r.ttl == 11), "--ttl 11\n{d}");
    // Materialised with an IPv4 CIDR: the name exists, no AAAA.
    s.dig(&["AAAA", "nginx.default.svc.cluster.local"])
        .assert_negative("NOERROR");
}

#[test]
fn service_a_and_aaaa_are_deduplicated() {
    let s = observed();
    // hn-0 and hn-1 share the node's address (host network): one record, not two.
    let d = s.dig(&["A", "hn.default.svc.cluster.local"]);
    assert_eq!(d.answers("A"), ["198.51.100.40"], "{d}");
    for pod in ["hn-0", "hn-1"] {
        let d = s.dig(&["A", &format!("{pod}.hn.default.svc.cluster.local")]);
        assert_eq!(d.answers("A"), ["198.51.100.40"], "{d}");
    }
    // Published identities only: db-0 (Ready) and db-4 (NodeLost, still Ready).
    let d = s.dig(&["A", "db.default.svc.cluster.local"]);
    assert_eq!(d.answers("A"), ["198.51.100.10", "198.51.100.14"], "{d}");
    let d = s.dig(&["AAAA", "db.default.svc.cluster.local"]);
    assert_eq!(d.answers("AAAA"), ["2001:db8:1::10"], "{d}");
}

#[test]
fn pod_a_and_aaaa_answer_that_identity() {
    let s = observed();
    let d = s.dig(&["A", "db-0.db.default.svc.cluster.local"]);
    assert_eq!(d.answers("A"), ["198.51.100.10"], "{d}");
    assert!(d.aa(), "{d}");
    let d = s.dig(&["AAAA", "db-0.db.default.svc.cluster.local"]);
    assert_eq!(d.answers("AAAA"), ["2001:db8:1::10"], "{d}");
    // db-4 is IPv4 only: AAAA is NODATA.
    s.dig(&["AAAA", "db-4.db.default.svc.cluster.local"])
        .assert_negative("NOERROR");
}

#[test]
fn materialised_pods_lease_from_an_ipv6_pod_cidr() {
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--pod-cidr", "2001:db8::/64"])
        .start();
    let d = s.dig(&["AAAA", "kubia-0.kubia.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("AAAA"),
        ["2001:db8::1"],
        "first address is ::1\n{d}"
    );
    let d = s.dig(&["AAAA", KUBIA_SET]);
    assert_eq!(d.answers("AAAA"), ["2001:db8::1", "2001:db8::2"], "{d}");
    s.dig(&["A", "kubia-0.kubia.default.svc.cluster.local"])
        .assert_negative("NOERROR");
    let d = s.dig(&["-x", "2001:db8::2"]);
    assert_eq!(
        d.answers("PTR"),
        ["kubia-1.kubia.default.svc.cluster.local."],
        "{d}"
    );
}

#[test]
fn named_port_srv_answers_in_both_label_forms() {
    let s = materialised();
    let targets: Vec<String> = (0..3)
        .map(|i| format!("0 33 8080 web-{i}.nginx.default.svc.cluster.local."))
        .collect();
    for name in [
        "_web._tcp.nginx.default.svc.cluster.local",
        "web.tcp.nginx.default.svc.cluster.local",
        "_WEB._Tcp.nginx.default.svc.cluster.local",
    ] {
        let d = s.dig(&["SRV", name]);
        assert_eq!(d.status, "NOERROR", "{d}");
        assert!(d.aa(), "{d}");
        // The named targetPort http-alt resolves to the container port 8080; weight
        // floor(100 / 3) = 33.
        assert_eq!(d.answers("SRV"), targets, "{name}\n{d}");
        // A of every target in Additional.
        let glue = d.glue();
        assert_eq!(glue.len(), 3, "{d}");
        for i in 0..3 {
            assert!(
                glue.iter().any(|g| g.starts_with(&format!(
                    "web-{i}.nginx.default.svc.cluster.local. A 192.0.2."
                ))),
                "glue for web-{i}\n{d}"
            );
        }
    }
    // UDP port, targetPort given as a number.
    let d = s.dig(&["SRV", "_dns._udp.nginx.default.svc.cluster.local"]);
    assert_eq!(d.answers("SRV").len(), 3, "{d}");
    assert!(
        d.answers("SRV").iter().all(|r| r.starts_with("0 33 5353 ")),
        "{d}"
    );
    // A protocol or port name that does not match: NXDOMAIN.
    for name in [
        "_web._udp.nginx.default.svc.cluster.local",
        "_nope._tcp.nginx.default.svc.cluster.local",
    ] {
        s.dig(&["SRV", name]).assert_negative("NXDOMAIN");
    }
}

#[test]
fn service_srv_answers_every_port() {
    let s = materialised();
    let d = s.dig(&["SRV", "nginx.default.svc.cluster.local"]);
    let srv = d.answers("SRV");
    // 3 identities x 3 ports = 9 records, weight floor(100 / 9) = 11.
    assert_eq!(srv.len(), 9, "{d}");
    for port in [8080, 9100, 5353] {
        for i in 0..3 {
            let want = format!("0 11 {port} web-{i}.nginx.default.svc.cluster.local.");
            assert!(srv.contains(&want), "missing {want}\n{d}");
        }
    }
    assert_eq!(d.glue().len(), 3, "one A per target\n{d}");
}

#[test]
fn pod_srv_answers_its_ports_with_itself_as_target() {
    let s = materialised();
    let d = s.dig(&["SRV", "web-1.nginx.default.svc.cluster.local"]);
    let target = "web-1.nginx.default.svc.cluster.local.";
    assert_eq!(
        d.answers("SRV"),
        [
            format!("0 33 5353 {target}"),
            format!("0 33 8080 {target}"),
            format!("0 33 9100 {target}"),
        ],
        "{d}"
    );
    assert_eq!(d.additional.len(), 1, "{d}");
    assert_eq!(d.additional[0].name, target, "{d}");
    assert_eq!(d.additional[0].rtype, "A", "{d}");
}

#[test]
fn srv_weight_counts_records_not_addresses() {
    // db-0 is dual-stack, db-4 IPv4: two SRV records, so weight 50 (CoreDNS would say 33).
    let s = observed();
    let d = s.dig(&["SRV", "_pg._tcp.db.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("SRV"),
        [
            "0 50 5432 db-0.db.default.svc.cluster.local.",
            "0 50 5432 db-4.db.default.svc.cluster.local.",
        ],
        "{d}"
    );
    assert_eq!(
        d.glue(),
        [
            "db-0.db.default.svc.cluster.local. A 198.51.100.10",
            "db-0.db.default.svc.cluster.local. AAAA 2001:db8:1::10",
            "db-4.db.default.svc.cluster.local. A 198.51.100.14",
        ],
        "{d}"
    );
}

#[test]
fn ptr_answers_the_identity_name_for_v4_and_v6() {
    let s = observed();
    let d = s.dig(&["-x", "198.51.100.10"]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert!(d.aa(), "{d}");
    assert_eq!(
        d.answers("PTR"),
        ["db-0.db.default.svc.cluster.local."],
        "{d}"
    );
    let d = s.dig(&["-x", "2001:db8:1::10"]);
    assert_eq!(
        d.answers("PTR"),
        ["db-0.db.default.svc.cluster.local."],
        "{d}"
    );
    // An unpublished address (db-1 is NotReady) has no PTR.
    s.dig(&["-x", "198.51.100.11"]).assert_negative("NXDOMAIN");
}

#[test]
fn unknown_reverse_names_are_nxdomain_with_the_reverse_zone_soa() {
    let s = materialised();
    let soa = s.dig(&["-x", "203.0.113.99"]).assert_negative("NXDOMAIN");
    assert_eq!(soa.name, "in-addr.arpa.", "{soa:?}");
    assert!(
        soa.data
            .starts_with("ns.dns.cluster.local. hostmaster.cluster.local. "),
        "{soa:?}"
    );
    assert!(soa.data.ends_with(" 7200 1800 86400 7"), "{soa:?}");
    let soa = s
        .dig(&["-x", "2001:db8:ffff::1"])
        .assert_negative("NXDOMAIN");
    assert_eq!(soa.name, "ip6.arpa.", "{soa:?}");
}

#[test]
fn dns_version_is_schema_1_1_0() {
    let s = materialised();
    let d = s.dig(&["TXT", "dns-version.cluster.local"]);
    assert_eq!(d.answers("TXT"), ["\"1.1.0\""], "{d}");
    assert!(d.aa(), "{d}");
}

#[test]
fn apex_soa_ns_and_nameserver_address() {
    let s = materialised();
    let d = s.dig(&["SOA", "cluster.local"]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert!(d.aa(), "{d}");
    assert_eq!(d.answer.len(), 1, "{d}");
    let soa = &d.answer[0];
    assert_eq!(soa.name, "cluster.local.", "{d}");
    let f: Vec<&str> = soa.data.split(' ').collect();
    assert_eq!(f.len(), 7, "{d}");
    assert_eq!(
        &f[..2],
        ["ns.dns.cluster.local.", "hostmaster.cluster.local."],
        "{d}"
    );
    assert!(f[2].parse::<u32>().is_ok(), "serial\n{d}");
    assert_eq!(
        &f[3..],
        ["7200", "1800", "86400", "7"],
        "MINIMUM = --negative-ttl\n{d}"
    );

    let d = s.dig(&["NS", "cluster.local"]);
    assert_eq!(d.answers("NS"), ["ns.dns.cluster.local."], "{d}");
    assert_eq!(
        d.glue(),
        ["ns.dns.cluster.local. A 127.0.0.1"],
        "the advertised address (the --listen address) as glue\n{d}"
    );
    let d = s.dig(&["A", "ns.dns.cluster.local"]);
    assert_eq!(d.answers("A"), ["127.0.0.1"], "{d}");
}

#[test]
fn namespace_and_svc_names_are_nodata() {
    let s = materialised();
    for name in [
        "default.svc.cluster.local",
        "svc.cluster.local",
        "kube-system.svc.cluster.local",
    ] {
        for t in ["A", "SRV"] {
            let soa = s.dig(&[t, name]).assert_negative("NOERROR");
            assert_eq!(soa.name, "cluster.local.", "{soa:?}");
        }
    }
    // A namespace that does not exist.
    s.dig(&["A", "nope.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
}

#[test]
fn other_types_on_existing_names_are_nodata() {
    let s = materialised();
    for (t, name) in [
        ("MX", "web-0.nginx.default.svc.cluster.local"),
        ("CNAME", "nginx.default.svc.cluster.local"),
        ("TXT", "nginx.default.svc.cluster.local"),
        ("A", "cluster.local"),
        ("A", "_web._tcp.nginx.default.svc.cluster.local"),
    ] {
        let soa = s.dig(&[t, name]).assert_negative("NOERROR");
        assert_eq!(soa.ttl, 7, "SOA TTL = --negative-ttl: {soa:?}");
    }
}

#[test]
fn nonexistent_names_are_nxdomain_with_negative_ttl_soa() {
    let s = materialised();
    for name in [
        "web-9.nginx.default.svc.cluster.local",
        "nope.default.svc.cluster.local",
        "x.web-0.nginx.default.svc.cluster.local",
        "nothing.cluster.local",
    ] {
        let d = s.dig(&["A", name]);
        let soa = d.assert_negative("NXDOMAIN");
        assert_eq!(soa.name, "cluster.local.", "{d}");
        assert_eq!(soa.ttl, 7, "SOA TTL = --negative-ttl\n{d}");
        assert!(
            soa.data.ends_with(" 7"),
            "SOA MINIMUM = --negative-ttl\n{d}"
        );
    }
}

#[test]
fn names_outside_the_zone_are_refused_without_aa() {
    let s = materialised();
    for name in ["example.org", "cluster.local.example.org", "local"] {
        let d = s.dig(&["A", name]);
        assert_eq!(d.status, "REFUSED", "{d}");
        assert!(!d.aa(), "no AA outside the zone\n{d}");
        assert!(d.answer.is_empty() && d.authority.is_empty(), "{d}");
        assert!(!d.flags.iter().any(|f| f == "ra"), "no recursion\n{d}");
    }
}

#[tokio::test]
async fn zone_transfers_are_refused() {
    let s = materialised();
    let mut tcp = client::tcp(s.dns).await;
    for t in [RecordType::AXFR, RecordType::IXFR] {
        let r = tcp
            .query(Name::from_ascii("cluster.local.").unwrap(), DNSClass::IN, t)
            .await
            .unwrap_or_else(|e| panic!("{t} over TCP: {e}\n{}", s.log_dump()));
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::Refused,
            "{t}: {r:?}"
        );
        assert!(r.answers.is_empty(), "{t}: {r:?}");
    }
    // dig's own AXFR gets no records either.
    let d = s.dig(&["AXFR", "cluster.local"]);
    assert!(d.answer.is_empty(), "{d}");
    assert!(d.raw.contains("Transfer failed"), "{d}");
}

#[test]
fn any_gets_one_hinfo_rfc8482() {
    let s = materialised();
    let d = s.dig(&["ANY", "nginx.default.svc.cluster.local"]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert_eq!(d.answer.len(), 1, "{d}");
    assert_eq!(d.answer[0].rtype, "HINFO", "{d}");
    assert_eq!(d.answer[0].data, "\"RFC8482\" \"\"", "{d}");
    // ANY on a missing name is still NXDOMAIN.
    s.dig(&["ANY", "nope.default.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
}

// ---------------------------------------------------------------------------------------------
// petdns extensions and observed states
// ---------------------------------------------------------------------------------------------

#[test]
fn declared_but_unpublished_identities_are_nodata_not_nxdomain() {
    let s = observed();
    // db-1 NotReady, db-2 Missing (no Pod), db-3 Terminating: declared, nothing published.
    for pod in ["db-1", "db-2", "db-3"] {
        for t in ["A", "AAAA", "SRV"] {
            s.dig(&[t, &format!("{pod}.db.default.svc.cluster.local")])
                .assert_negative("NOERROR");
        }
    }
    // Outside the declared range [0, 5): NXDOMAIN.
    s.dig(&["A", "db-5.db.default.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
}

#[test]
fn service_whose_pods_are_all_unready_is_nodata() {
    let s = observed();
    for t in ["A", "SRV"] {
        s.dig(&[t, "stuck.default.svc.cluster.local"])
            .assert_negative("NOERROR");
    }
    s.dig(&["SRV", "_http._tcp.stuck.default.svc.cluster.local"])
        .assert_negative("NOERROR");
}

#[test]
fn observed_states_follow_the_endpointslice_rule() {
    let s = observed();
    let state = |pod: &str, set: &str| -> (String, Vec<String>) {
        let name = format!("{pod}.{set}.default.svc.cluster.local");
        let txt = s.dig(&["TXT", &name]);
        let st = txt
            .answers("TXT")
            .first()
            .and_then(|t| {
                t.split('"')
                    .find(|f| f.starts_with("state="))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no state fact\n{txt}"));
        (st, s.dig(&["A", &name]).answers("A"))
    };
    assert_eq!(
        state("db-0", "db"),
        ("state=Ready".into(), vec!["198.51.100.10".into()])
    );
    assert_eq!(state("db-1", "db"), ("state=NotReady".into(), vec![]));
    assert_eq!(state("db-2", "db"), ("state=Missing".into(), vec![]));
    assert_eq!(state("db-3", "db"), ("state=Terminating".into(), vec![]));
    // The node is NotReady but the pod's Ready condition is still True: shown, still published.
    assert_eq!(
        state("db-4", "db"),
        ("state=NodeLost".into(), vec!["198.51.100.14".into()])
    );
    // publishNotReadyAddresses: true publishes a NotReady pod.
    assert_eq!(
        state("quorum-0", "quorum"),
        ("state=NotReady".into(), vec!["198.51.100.20".into()])
    );
    // A pod on a node that is not in the manifests counts as on a healthy node.
    assert_eq!(state("stuck-0", "stuck"), ("state=NotReady".into(), vec![]));
    // The metrics count identities by state.
    assert_eq!(s.metric("petdns_identities{state=\"NodeLost\"}"), Some(1.0));
    assert_eq!(s.metric("petdns_identities{state=\"Missing\"}"), Some(1.0));
}

#[test]
fn identity_txt_answers_the_identity_facts() {
    let s = materialised();
    let d = s.dig(&["TXT", "web-1.nginx.default.svc.cluster.local"]);
    assert_eq!(d.answer.len(), 1, "{d}");
    let facts: Vec<&str> = d.answer[0]
        .data
        .split('"')
        .filter(|f| !f.trim().is_empty())
        .collect();
    assert_eq!(facts.len(), 5, "{d}");
    assert_eq!(&facts[..3], ["ordinal=1", "set=web", "state=Ready"], "{d}");
    assert!(facts[3].starts_with("revision=web-"), "{d}");
    assert_eq!(facts[4], "claims=www-web-1,logs-web-1", "{d}");

    let s = observed();
    let d = s.dig(&["TXT", "db-0.db.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("TXT"),
        ["\"ordinal=0\" \"set=db\" \"state=Ready\" \"revision=db-6d8f5c\" \"claims=data-db-0\""],
        "{d}"
    );
}

#[test]
fn ordinal_srv_priority_from_the_service_annotation() {
    let s = materialised();
    let d = s.dig(&["SRV", "_client._tcp.zk.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("SRV"),
        [
            "0 33 2181 zk-0.zk.default.svc.cluster.local.",
            "1 33 2181 zk-1.zk.default.svc.cluster.local.",
            "2 33 2181 zk-2.zk.default.svc.cluster.local.",
        ],
        "{d}"
    );
    // Without the annotation every priority is 0.
    let d = s.dig(&["SRV", "_web._tcp.nginx.default.svc.cluster.local"]);
    assert!(d.answers("SRV").iter().all(|r| r.starts_with("0 ")), "{d}");
}

#[test]
fn start_ordinal_numbers_identities_from_start() {
    let s = materialised();
    let d = s.dig(&["SRV", "shard.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("SRV"),
        [
            "0 50 7000 shard-5.shard.default.svc.cluster.local.",
            "0 50 7000 shard-6.shard.default.svc.cluster.local.",
        ],
        "{d}"
    );
    let d = s.dig(&["TXT", "shard-5.shard.default.svc.cluster.local"]);
    assert!(d.answer[0].data.starts_with("\"ordinal=5\""), "{d}");
    for pod in ["shard-0", "shard-7"] {
        s.dig(&["A", &format!("{pod}.shard.default.svc.cluster.local")])
            .assert_negative("NXDOMAIN");
    }
}

// ---------------------------------------------------------------------------------------------
// Wire behaviour
// ---------------------------------------------------------------------------------------------

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

/// Transparent huge pages are off for petdns (a fault on one zeroes 2 MiB: the cold start at
/// 100,000 pods went from 2.2 s to 0.8 s without them), unless `MIMALLOC_ALLOW_THP` asks for
/// them, as the kernel reports in `/proc/<pid>/status`.
#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    let thp = |s: &Server| -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
            .expect("the kernel reports THP_enabled in /proc/<pid>/status")
    };
    let s = Options::new(&[&example("kubia.yaml")]).start();
    assert_eq!(thp(&s), "0");
    let s = Options::new(&[&example("kubia.yaml")])
        .env("MIMALLOC_ALLOW_THP", "1")
        .start();
    assert_eq!(thp(&s), "1");
}

// ---------------------------------------------------------------------------------------------
// Hostile and malformed traffic: RFC answers, and the server keeps answering everyone else
// ---------------------------------------------------------------------------------------------

/// The server still answers a plain question over UDP and TCP, and nothing panicked.
#[track_caller]
fn assert_still_answering(s: &Server) {
    let name = format!("{KUBIA_SET}.");
    let r = udp_message(s.dns, &query(0x7ff0, &name, RecordType::A, None));
    assert_eq!(r.answers.len(), 2, "UDP: {r:?}\n{}", s.log_dump());
    let r = tcp_messages(s.dns, &[query(0x7ff1, &name, RecordType::A, Some(1232))]);
    assert_eq!(r[0].answers.len(), 2, "TCP: {:?}\n{}", r[0], s.log_dump());
    assert!(
        !s.logs().iter().any(|l| l.contains("panicked")),
        "{}",
        s.log_dump()
    );
}

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

/// A query header: `id`, flags 0 (QUERY, RD clear) and the four counts.
fn header(id: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[0, 0]);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

/// Sends every packet from one socket, then collects replies until `quiet` passes without one;
/// returns the replies by id (the last one for an id).
fn udp_burst(
    server: std::net::SocketAddr,
    packets: &[Vec<u8>],
    quiet: Duration,
) -> std::collections::BTreeMap<u16, Vec<u8>> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(quiet)).unwrap();
    let reader = sock.try_clone().unwrap();
    // Read while sending, so that the client's receive buffer never overflows.
    let collect = std::thread::spawn(move || {
        let mut replies = std::collections::BTreeMap::new();
        let mut buf = vec![0u8; 65535];
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            if n >= 2 {
                replies.insert(u16::from_be_bytes([buf[0], buf[1]]), buf[..n].to_vec());
            }
        }
        replies
    });
    for p in packets {
        sock.send_to(p, server).unwrap();
    }
    collect.join().unwrap()
}

/// Response code (the header's four bits) of a reply.
fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
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

// ---------------------------------------------------------------------------------------------
// Lifecycle: first load, reloads, leases, shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn servfail_and_not_ready_until_the_first_valid_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubia.yaml");
    std::fs::write(&file, read(&fixture("broken.yaml"))).unwrap();
    let s = Options::new(&[&file]).not_ready().start();
    let rejected = s.wait_message("manifest rejected; the last good state keeps serving", 0);
    assert_eq!(rejected["line"], 20, "{rejected}");
    assert_eq!(
        s.get("/readyz").unwrap().0,
        503,
        "not ready before the first load"
    );
    assert_eq!(s.get("/healthz").unwrap().0, 200, "alive all the same");
    for name in [KUBIA_SET, "nope.cluster.local", "cluster.local"] {
        let d = s.dig(&["A", name]);
        assert_eq!(d.status, "SERVFAIL", "{d}");
        assert!(!d.aa(), "{d}");
    }
    let d = s.dig(&["-x", "192.0.2.1"]);
    assert_eq!(d.status, "SERVFAIL", "nothing may cache a false miss\n{d}");
    assert_eq!(s.dig(&["A", "example.org"]).status, "REFUSED");

    replace_file(&file, &read(&example("kubia.yaml")));
    s.wait_message("snapshot published", 0);
    s.wait_ready();
    let d = s.dig(&["A", KUBIA_SET]);
    assert_eq!(d.answers("A"), ["192.0.2.1", "192.0.2.2"], "{d}");
    let (status, body) = s.get("/readyz").unwrap();
    assert_eq!((status, body.trim()), (200, "ready"));
}

/// The seed's story: `replicas: 2` edited to 3 in an editor, `kubia-2` answered within 1 s.
#[test]
fn hot_reload_scale_up_is_answered_within_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let [file] = copy_into(dir.path(), &[example("kubia.yaml")])
        .try_into()
        .unwrap();
    let s = Server::new(&[&file]);
    let kubia2 = "kubia-2.kubia.default.svc.cluster.local.";
    s.dig(&["A", kubia2]).assert_negative("NXDOMAIN");
    let generation = s.generation();
    let reloads = s.metric("petdns_reloads_total").unwrap_or(0.0);

    let text = read(&file);
    assert!(text.contains("replicas: 2"), "{text}");
    let edited = Instant::now();
    replace_file(&file, &text.replace("replicas: 2", "replicas: 3"));
    let q = query(31, kubia2, RecordType::A, None);
    let answered = poll(Duration::from_secs(5), || {
        let reply = udp_exchange(s.dns, &q.to_vec().unwrap(), Duration::from_millis(200))?;
        let m = Message::from_vec(&reply).ok()?;
        (!m.answers.is_empty()).then(|| edited.elapsed())
    })
    .unwrap_or_else(|| panic!("kubia-2 never answered\n{}", s.log_dump()));
    assert!(
        answered < Duration::from_secs(1),
        "kubia-2 answered after {answered:?}"
    );
    eprintln!("kubia-2 answered {answered:?} after the edit");

    let d = s.dig(&["A", kubia2]);
    assert_eq!(d.answers("A"), ["192.0.2.3"], "{d}");
    let d = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(d.answers("SRV").len(), 3, "{d}");
    assert!(
        d.answers("SRV").iter().all(|r| r.starts_with("0 33 80 ")),
        "{d}"
    );
    assert!(s.generation() > generation, "{}", s.log_dump());
    assert_eq!(
        s.metric("petdns_snapshot_generation"),
        Some(s.generation() as f64)
    );
    assert!(s.metric("petdns_reloads_total").unwrap() > reloads);
}

/// An invalid edit is rejected with file and line; the last good state keeps serving.
#[test]
fn invalid_edit_keeps_serving_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let [file] = copy_into(dir.path(), &[example("kubia.yaml")])
        .try_into()
        .unwrap();
    let s = Server::new(&[&file]);
    let good = read(&file);
    let before = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(before.answers("SRV").len(), 2, "{before}");
    let replicas_line = good
        .lines()
        .position(|l| l.contains("replicas: 2"))
        .unwrap()
        + 1;
    let rejected = "manifest rejected; the last good state keeps serving";

    // 1. Bad YAML: an unclosed flow sequence.
    replace_file(&file, &good.replace("replicas: 2", "replicas: [3"));
    let log = s.wait_message(rejected, 0);
    assert!(
        log["file"].as_str().unwrap_or("").ends_with("kubia.yaml"),
        "{log}"
    );
    assert!(
        log["line"].as_u64().unwrap_or(0) >= replicas_line as u64,
        "{log}"
    );
    assert!(!log["reason"].as_str().unwrap_or("").is_empty(), "{log}");
    // The source logs the rejection, then counts it: wait for the count.
    let counted = |n: f64| {
        poll(DEADLINE, || {
            (s.metric("petdns_reload_errors_total") == Some(n)).then_some(())
        })
        .unwrap_or_else(|| panic!("reload errors never reached {n}\n{}", s.metrics()))
    };
    counted(1.0);
    let after = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(after.answers("SRV"), before.answers("SRV"), "{after}");
    assert_eq!(
        s.get("/readyz").unwrap().0,
        200,
        "still ready: the old state serves"
    );

    // 2. A type error: replicas is a string.
    replace_file(&file, &good.replace("replicas: 2", "replicas: three"));
    let log = s.wait_message(rejected, 1);
    assert!(
        log["file"].as_str().unwrap_or("").ends_with("kubia.yaml"),
        "{log}"
    );
    assert_eq!(log["line"], replicas_line, "the line of `replicas:`\n{log}");
    counted(2.0);
    let after = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(after.answers("SRV"), before.answers("SRV"), "{after}");
    assert_eq!(s.generation(), 1, "no new snapshot for a rejected edit");

    // 3. Fixed: applied.
    replace_file(&file, &good.replace("replicas: 2", "replicas: 1"));
    s.wait_message("snapshot published", 1);
    let d = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(
        d.answers("SRV"),
        ["0 100 80 kubia-0.kubia.default.svc.cluster.local."],
        "{d}"
    );
}

#[test]
fn manifest_directory_picks_up_added_and_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_into(dir.path(), &[example("kubia.yaml")]);
    // Not a manifest name: ignored.
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let s = Server::new(&[dir.path()]);
    let web0 = "web-0.nginx.default.svc.cluster.local";
    s.dig(&["A", web0]).assert_negative("NXDOMAIN");

    // Add a file (written beside, then renamed in, as a deploy tool would).
    let added = dir.path().join("ports.yaml");
    replace_file(&added, &read(&fixture("ports.yaml")));
    let d = poll(DEADLINE, || {
        let d = s.dig(&["A", web0]);
        (d.status == "NOERROR").then_some(d)
    })
    .unwrap_or_else(|| panic!("the added file was not loaded\n{}", s.log_dump()));
    assert_eq!(d.answers("A").len(), 1, "{d}");
    assert_eq!(
        s.dig(&["A", KUBIA_SET]).answers("A").len(),
        2,
        "kubia still served"
    );

    // Remove it again.
    std::fs::remove_file(&added).unwrap();
    poll(DEADLINE, || {
        (s.dig(&["A", web0]).status == "NXDOMAIN").then_some(())
    })
    .unwrap_or_else(|| panic!("the removed file still answers\n{}", s.log_dump()));
    assert_eq!(s.dig(&["A", KUBIA_SET]).answers("A").len(), 2);
}

fn addresses(s: &Server, pods: &[&str]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            let d = s.dig(&["A", &format!("{p}.kubia.default.svc.cluster.local")]);
            assert_eq!(d.answers("A").len(), 1, "{d}");
            d.answers("A")[0].clone()
        })
        .collect()
}

#[test]
fn leases_survive_restarts_and_scale_down_and_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("kubia.yaml");
    let kubia = read(&example("kubia.yaml"));
    std::fs::write(&file, kubia.replace("replicas: 2", "replicas: 3")).unwrap();
    let pods = ["kubia-0", "kubia-1", "kubia-2"];

    let s = Options::new(&[&file]).state_dir(&state).start();
    let first = addresses(&s, &pods);
    assert_eq!(first, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let (status, _) = s.terminate();
    assert!(status.success());
    let leases = read(&state.join("leases.json"));
    assert!(leases.contains("192.0.2.3"), "{leases}");

    // Same --state-dir after a restart: same addresses.
    let s = Options::new(&[&file]).state_dir(&state).start();
    assert_eq!(addresses(&s, &pods), first, "{}", s.log_dump());

    // Scale down to 1 and add another set: it must not take kubia-1's or kubia-2's address.
    let other = read(&example("kubia.yaml"))
        .replace("name: kubia", "name: other")
        .replace("app: kubia", "app: other")
        .replace("serviceName: kubia", "serviceName: other");
    let g = s.generation();
    replace_file(
        &file,
        &format!(
            "{}\n---\n{other}",
            kubia.replace("replicas: 2", "replicas: 1")
        ),
    );
    s.wait_message("snapshot published", g as usize);
    s.dig(&["A", "kubia-2.kubia.default.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
    let d = s.dig(&["A", "other.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("A"),
        ["192.0.2.4", "192.0.2.5"],
        "retained leases stay taken\n{d}"
    );

    // Scale back up: kubia-2 regains its old address.
    let g = s.generation();
    replace_file(
        &file,
        &format!(
            "{}\n---\n{other}",
            kubia.replace("replicas: 2", "replicas: 3")
        ),
    );
    s.wait_message("snapshot published", g as usize);
    assert_eq!(addresses(&s, &pods), first, "{}", s.log_dump());
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let s = kubia();
    assert_eq!(s.dig(&["A", KUBIA_SET]).answers("A").len(), 2);
    let (status, logs) = s.terminate();
    let dump = logs.join("\n");
    assert!(status.success(), "exit status {status:?}\n{dump}");
    assert_eq!(status.code(), Some(0), "{dump}");
    let messages: Vec<String> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect();
    let down = messages.iter().position(|m| m == "shutting down");
    let done = messages.iter().position(|m| m == "shutdown complete");
    assert!(down.is_some() && done.is_some() && down < done, "{dump}");
    assert_eq!(
        messages.last().map(String::as_str),
        Some("shutdown complete"),
        "{dump}"
    );
}

#[test]
fn check_prints_the_identity_table_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let kubia = example("kubia.yaml");
    let (code, out, err) = check(&[
        "--manifests",
        kubia.to_str().unwrap(),
        "--pod-cidr",
        "192.0.2.0/24",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAMESPACE",
            "SET",
            "ORDINAL",
            "POD",
            "STATE",
            "ADDRESSES",
            "PUBLISHED"
        ],
        "{out}"
    );
    assert_eq!(
        rows[1],
        [
            "default",
            "kubia",
            "0",
            "kubia-0",
            "Ready",
            "192.0.2.1",
            "yes"
        ],
        "{out}"
    );
    assert_eq!(
        rows[2],
        [
            "default",
            "kubia",
            "1",
            "kubia-1",
            "Ready",
            "192.0.2.2",
            "yes"
        ],
        "{out}"
    );
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        !state.join("leases.json").exists(),
        "check never writes leases"
    );

    // Observed states.
    let observed = fixture("observed.yaml");
    let (code, out, _) = check(&[
        "--manifests",
        observed.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [
                "default",
                "db",
                "4",
                "db-4",
                "NodeLost",
                "198.51.100.14",
                "yes"
            ]),
        "{out}"
    );

    // Invalid: exit 2, `error: file:line: reason`.
    let broken = fixture("broken.yaml");
    let (code, out, err) = check(&[
        "--manifests",
        broken.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    let want = format!("error: {}:20: ", broken.display());
    assert!(
        out.lines().any(|l| l.starts_with(&want)),
        "want {want:?}\n{out}{err}"
    );

    // A path that does not exist.
    let (code, out, err) = check(&[
        "--manifests",
        "/nonexistent/petdns.yaml",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
}

#[test]
fn metrics_count_queries_by_type_and_rcode() {
    let s = kubia();
    let series = "petdns_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}";
    let nx = "petdns_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}";
    let before = s
        .metric(series)
        .unwrap_or_else(|| panic!("{series} missing\n{}", s.metrics()));
    for _ in 0..3 {
        s.dig(&["A", KUBIA_SET]);
    }
    s.dig(&["A", "nope.cluster.local"]);
    assert_eq!(s.metric(series), Some(before + 3.0), "{}", s.metrics());
    assert_eq!(s.metric(nx), Some(1.0), "{}", s.metrics());
    assert_eq!(s.metric("petdns_identities{state=\"Ready\"}"), Some(2.0));
    assert_eq!(s.metric("petdns_snapshot_generation"), Some(1.0));
    assert_eq!(s.metric("petdns_reload_errors_total"), Some(0.0));
    assert_eq!(s.get("/healthz").unwrap().0, 200);
}

/// The seed's walkthrough: `dig SRV kubia.default.svc.cluster.local`.
#[test]
fn kubia_walkthrough() {
    let s = kubia();
    let d = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert!(d.aa(), "{d}");
    // The Service port 80 has no targetPort, so the SRV port is 80 (not the container's 8080).
    assert_eq!(
        d.answers("SRV"),
        [
            "0 50 80 kubia-0.kubia.default.svc.cluster.local.",
            "0 50 80 kubia-1.kubia.default.svc.cluster.local.",
        ],
        "{d}"
    );
    assert_eq!(
        d.glue(),
        [
            "kubia-0.kubia.default.svc.cluster.local. A 192.0.2.1",
            "kubia-1.kubia.default.svc.cluster.local. A 192.0.2.2",
        ],
        "{d}"
    );
    let d = s.dig(&["+short", "A", "kubia-0.kubia.default.svc.cluster.local"]);
    assert_eq!(d.raw.trim(), "192.0.2.1", "{d}");
    let d = s.dig(&["SRV", "_http._tcp.kubia.default.svc.cluster.local"]);
    assert_eq!(d.answers("SRV").len(), 2, "{d}");
    let d = s.dig(&["TXT", "kubia-1.kubia.default.svc.cluster.local"]);
    assert!(
        d.answers("TXT")[0].contains("\"claims=data-kubia-1\""),
        "{d}"
    );
}

/// examples/web.yaml: the Kubernetes documentation's nginx/web StatefulSet (claims `www`).
#[test]
fn web_example_walkthrough() {
    let s = Server::new(&[&example("web.yaml")]);
    let srv = [
        "0 50 80 web-0.nginx.default.svc.cluster.local.",
        "0 50 80 web-1.nginx.default.svc.cluster.local.",
    ];
    let glue = [
        "web-0.nginx.default.svc.cluster.local. A 192.0.2.1",
        "web-1.nginx.default.svc.cluster.local. A 192.0.2.2",
    ];
    for name in [
        "nginx.default.svc.cluster.local",
        "_web._tcp.nginx.default.svc.cluster.local",
    ] {
        let d = s.dig(&["SRV", name]);
        assert_eq!(d.status, "NOERROR", "{d}");
        assert!(d.aa(), "{d}");
        assert_eq!(d.answers("SRV"), srv, "{d}");
        assert_eq!(d.glue(), glue, "{d}");
    }
    let d = s.dig(&["A", "nginx.default.svc.cluster.local"]);
    assert_eq!(d.answers("A"), ["192.0.2.1", "192.0.2.2"], "{d}");
    let d = s.dig(&["TXT", "web-0.nginx.default.svc.cluster.local"]);
    let txt = d.answers("TXT");
    assert_eq!(txt.len(), 1, "{d}");
    assert!(
        txt[0].starts_with("\"ordinal=0\" \"set=web\" \"state=Ready\" \"revision=web-"),
        "{d}"
    );
    assert!(txt[0].ends_with(" \"claims=www-web-0\""), "{d}");
    let d = s.dig(&["-x", "192.0.2.2"]);
    assert_eq!(
        d.answers("PTR"),
        ["web-1.nginx.default.svc.cluster.local."],
        "{d}"
    );
    s.dig(&["AAAA", "web-0.nginx.default.svc.cluster.local"])
        .assert_negative("NOERROR");
    s.dig(&["A", "web-2.nginx.default.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
}

/// identity.md: a corrupt lease file is reported and rebuilt, never silently reused.
#[test]
fn corrupt_lease_file_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("leases.json"), "{ not json").unwrap();
    let s = Options::new(&[&example("kubia.yaml")])
        .state_dir(&state)
        .start();
    let warned = s
        .log_records()
        .into_iter()
        .find(|v| v["level"] == "WARN" && v["message"].as_str().unwrap_or("").contains("corrupt"));
    assert!(
        warned.is_some(),
        "the corrupt file must be reported\n{}",
        s.log_dump()
    );
    let d = s.dig(&["A", KUBIA_SET]);
    assert_eq!(d.answers("A"), ["192.0.2.1", "192.0.2.2"], "{d}");
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("leases.json.corrupt")),
        "{names:?}"
    );
    let rebuilt = read(&state.join("leases.json"));
    assert!(rebuilt.contains("192.0.2.2"), "{rebuilt}");
}

/// Regression: the reason of a rejected manifest repeated serde-saphyr's "line N column M",
/// where N counts from the start of the YAML document, so `kubia.yaml:20` was followed by
/// "line 7 column 13" for the same error.
#[test]
fn regression_reject_reason_repeated_a_document_relative_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubia.yaml");
    std::fs::write(&file, read(&fixture("broken.yaml"))).unwrap();
    let s = Options::new(&[&file]).not_ready().start();
    let log = s.wait_message("manifest rejected; the last good state keeps serving", 0);
    assert_eq!(log["line"], 20, "{log}");
    let reason = log["reason"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "{log}");
    assert!(
        !reason.contains("line "),
        "no second, document-relative line: {log}"
    );

    let (code, out, _) = check(&[
        "--manifests",
        file.to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("error: {}:20: ", file.display())),
        "{out}"
    );
    assert!(!first.contains("line "), "{out}");
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

#[test]
fn srv_priority_flag_applies_to_services_without_the_annotation() {
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--srv-priority", "ordinal"])
        .start();
    let d = s.dig(&["+short", "SRV", "kubia.default.svc.cluster.local."]);
    let mut lines: Vec<&str> = d.raw.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 50 80 kubia-0.kubia.default.svc.cluster.local.",
            "1 50 80 kubia-1.kubia.default.svc.cluster.local."
        ],
        "{d}"
    );
}

fn petdns(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_petdns"))
        .args(args)
        .env(
            "PETDNS_STATE_DIR",
            std::env::temp_dir().join("petdns-test-no-such-dir"),
        )
        .output()
        .expect("run petdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn explain_says_why_a_name_answers_or_not() {
    let web = example("web.yaml");
    let web = web.to_str().unwrap();
    let (code, out) = petdns(&[
        "explain",
        "web-1.nginx.default.svc.cluster.local",
        "--manifests",
        web,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("web-1.nginx.default: answers 10.244.0.2 (Ready)"),
        "{out}"
    );
    assert!(out.contains("IN TXT \"ordinal=1\""), "{out}");
    let (_, out) = petdns(&["explain", "web-5.nginx.default", "--manifests", web]);
    assert!(
        out.contains("NXDOMAIN, ordinal 5 is outside the declared range [0, 2)"),
        "{out}"
    );
    let (_, out) = petdns(&["explain", "web-0.kubia.default", "--manifests", web]);
    assert!(out.contains("governed by Service \"nginx\""), "{out}");
    // Observed pods: a NotReady one is explained with the publishNotReadyAddresses fix.
    let observed = fixture("observed.yaml");
    let (code, out) = petdns(&[
        "explain",
        "db.default",
        "--manifests",
        observed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is not Ready"), "{out}");
    // A name that cannot be read is an input error.
    let (code, out) = petdns(&["explain", "a.b.c.d.e.f", "--manifests", web]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn completions_and_man_page_come_from_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out) = petdns(&["completions", shell]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("explain") && out.contains("manifests"),
            "{shell}: {out}"
        );
    }
    let (code, out) = petdns(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(".TH petdns 1") && out.contains("serve"),
        "{out}"
    );
}

#[test]
fn forward_sends_names_petdns_does_not_own_upstream() {
    // The upstream: another petdns serving the web example in the same zone (standing in for
    // CoreDNS beside petdns). The server under test owns kubia only.
    let upstream = Server::new(&[&example("web.yaml")]);
    let forward = upstream.dns.to_string();
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&["--forward", &forward])
        .start();
    // A name in the zone that petdns does not own is answered by the upstream, without AA,
    // with RA.
    let d = s.dig(&["+rec", "A", "web-0.nginx.default.svc.cluster.local."]);
    assert_eq!(d.status, "NOERROR", "{d}");
    assert_eq!(d.answers("A"), ["192.0.2.1"], "{d}");
    assert!(!d.aa() && d.flags.contains(&"ra".to_string()), "{d}");
    // Own names stay authoritative.
    let d = s.dig(&["A", "kubia-0.kubia.default.svc.cluster.local."]);
    assert!(d.aa(), "{d}");
    // The upstream's NXDOMAIN comes back as NXDOMAIN.
    let d = s.dig(&["A", "web-9.nginx.default.svc.cluster.local."]);
    assert_eq!(d.status, "NXDOMAIN", "{d}");
    // The upstream refuses names outside its zone: no usable answer, SERVFAIL, counted.
    let d = s.dig(&["A", "example.org."]);
    assert_eq!(d.status, "SERVFAIL", "{d}");
    assert!(s.metric("petdns_dns_forwarded_total").unwrap() >= 3.0);
    assert!(s.metric("petdns_dns_forward_errors_total").unwrap() >= 1.0);
    // Without --forward the same name outside the zone is REFUSED.
    assert_eq!(upstream.dig(&["A", "example.org."]).status, "REFUSED");
}

#[test]
fn queries_are_logged_only_with_log_queries() {
    let quiet = kubia();
    quiet.dig(&["A", "kubia-0.kubia.default.svc.cluster.local."]);
    let loud = Options::new(&[&example("kubia.yaml")])
        .args(&["--log-queries"])
        .start();
    loud.dig(&["A", "kubia-0.kubia.default.svc.cluster.local."]);
    let line = poll(Duration::from_secs(2), || {
        loud.messages("query").into_iter().next()
    })
    .expect("a query line");
    assert_eq!(
        line["name"], "kubia-0.kubia.default.svc.cluster.local.",
        "{line}"
    );
    assert_eq!(line["qtype"], "A");
    assert_eq!(line["rcode"], "NOERROR");
    assert!(quiet.messages("query").is_empty(), "{}", quiet.log_dump());
}

#[test]
fn man_pages_exist_for_each_command() {
    for command in ["serve", "check", "explain", "controller"] {
        let (code, out) = petdns(&["man", command]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!(".TH petdns-{command} 1")),
            "{command}: {out}"
        );
    }
    assert_eq!(petdns(&["man", "nope"]).0, 2);
}

#[test]
fn kill_9_during_lease_writes_and_reloads_never_loses_addresses() {
    // State safety: SIGKILL at arbitrary moments while manifests change and leases are being
    // written. Every restart must find a consistent lease file (never a torn or corrupt one)
    // and give every identity the address it had.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("kubia.yaml");
    let kubia = read(&example("kubia.yaml"));
    std::fs::write(&file, kubia.replace("replicas: 2", "replicas: 3")).unwrap();
    let pods = ["kubia-0", "kubia-1", "kubia-2"];
    let s = Options::new(&[&file]).state_dir(&state).start();
    let first = addresses(&s, &pods);
    let mut s = Some(s);
    for round in 0..12u64 {
        let server = s.take().unwrap();
        // Scale up and down so that leases are added (written) while the process dies.
        let replicas = 3 + (round % 4);
        replace_file(
            &file,
            &kubia.replace("replicas: 2", &format!("replicas: {replicas}")),
        );
        std::thread::sleep(Duration::from_millis(round * 7 % 40));
        let logs = server.kill();
        assert!(!logs.iter().any(|l| l.contains("corrupt")), "{logs:#?}");
        let restarted = Options::new(&[&file]).state_dir(&state).start();
        let now = addresses(&restarted, &pods);
        assert_eq!(now, first, "round {round}: {}", restarted.log_dump());
        assert!(
            !restarted.logs().iter().any(|l| l.contains("corrupt")),
            "round {round}: {}",
            restarted.log_dump()
        );
        let leases: serde_json::Value =
            serde_json::from_str(&read(&state.join("leases.json"))).expect("a whole lease file");
        let addrs: Vec<&str> = leases["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["address"].as_str().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<&&str> = addrs.iter().collect();
        assert_eq!(
            unique.len(),
            addrs.len(),
            "round {round}: duplicate leases {addrs:?}"
        );
        s = Some(restarted);
    }
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
