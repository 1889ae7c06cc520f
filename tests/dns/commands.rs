//! The other commands and flags: `check`, `explain`, `completions`, `man`, `--forward`,
//! `--log-queries`, `/metrics`.

use super::*;

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
