//! Names and answers: the records.md table, the petdns extensions (NODATA for declared names,
//! identity TXT, ordinal SRV priority) and the states observed pods are in.

use super::*;

/// A server on the materialised fixtures with distinctive TTLs.
fn materialised() -> Server {
    Options::new(&[&fixture("ports.yaml"), &fixture("leader.yaml")])
        .args(&["--ttl", "11", "--negative-ttl", "7"])
        .start()
}

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
