//! CoreDNS beside petdns on the same real API server: CoreDNS's `kubernetes` plugin, built from
//! its Go module (`scripts/coredns-build.sh`, `tests/coredns/`), with a kubeconfig of its own
//! ServiceAccount and the ClusterRole CoreDNS ships (`tests/coredns/rbac.yaml`), asked the same
//! questions as `petdns serve --kube` over UDP and TCP.
//!
//! Every difference in rcode, answer, authority or additional section (TTLs and SOA serials
//! aside) must be one docs/coredns.md lists as intended, by the reason [`classify`] gives it;
//! anything else fails the test. The table of differences in docs/coredns.md is this test's
//! output: it fails when the table there is not what the run found, and
//! `PETDNS_WRITE_DOCS=1` writes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::kubelet::Readiness;
use crate::plane::{ControlPlane, repo};
use crate::support::{Dig, dig, http_get};
use crate::{SLOW, apply, field, namespace, shared, wait, wait_pod_ip};

/// The CoreDNS binary, built once per machine.
fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/coredns-build.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/coredns-build.sh");
        assert!(
            out.status.success(),
            "scripts/coredns-build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        Path::new(&dir).join("coredns")
    })
    .clone()
}

/// A free loopback port (TCP and UDP), for a server that cannot bind port 0 and say which.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running CoreDNS, killed when dropped.
pub struct CoreDns {
    child: Child,
    pub dns: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl CoreDns {
    /// CoreDNS for `cluster.local` and the reverse zones on `plane`, with `plugin_options`
    /// in its `kubernetes` block and `extra` plugins in the server block.
    pub fn start(plane: &ControlPlane, plugin_options: &str, extra: &str) -> CoreDns {
        let bin = binary();
        plane.kubectl(&[
            "apply",
            "-f",
            repo().join("tests/coredns/rbac.yaml").to_str().unwrap(),
        ]);
        let token = plane.kubectl(&[
            "create",
            "token",
            "coredns",
            "-n",
            "kube-system",
            "--duration",
            "6h",
        ]);
        let kubeconfig = plane.token_kubeconfig("coredns", token.trim());
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, ready) = (free_port(), free_port());
        let corefile = format!(
            "cluster.local:{port} in-addr.arpa:{port} ip6.arpa:{port} {{\n\
             \x20   bind 127.0.0.1\n\
             \x20   errors\n\
             \x20   ready 127.0.0.1:{ready}\n\
             \x20   kubernetes cluster.local in-addr.arpa ip6.arpa {{\n\
             \x20       kubeconfig {kubeconfig}\n\
             \x20       ttl 5\n\
             \x20       {plugin_options}\n\
             \x20   }}\n\
             \x20   {extra}\n\
             }}\n",
            kubeconfig = kubeconfig.display(),
        );
        let path = dir.path().join("Corefile");
        std::fs::write(&path, corefile).expect("Corefile");
        let log = std::fs::File::create(dir.path().join("coredns.log")).expect("log");
        let child = Command::new(&bin)
            .arg("-conf")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start coredns");
        let c = CoreDns {
            child,
            dns: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let ready_addr = SocketAddr::from(([127, 0, 0, 1], ready));
        wait(SLOW, || {
            matches!(http_get(ready_addr, "/ready"), Ok((200, _))).then_some(())
        })
        .unwrap_or_else(|| panic!("CoreDNS never ready:\n{}", c.log()));
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coredns.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CoreDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer, normalised for comparison: records as `name type data` without TTL, names in
/// lower case, the SOA serial as `S`, each section sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    rcode: String,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn normalise(d: &Dig) -> Answer {
    let records = |rrs: &[crate::support::Rr]| {
        let mut v: Vec<String> = rrs
            .iter()
            .map(|r| {
                // Names compare case-insensitively; TXT strings are data.
                let mut data = if r.rtype == "TXT" {
                    r.data.clone()
                } else {
                    r.data.to_lowercase()
                };
                if r.rtype == "SOA" {
                    let mut parts: Vec<&str> = data.split_whitespace().collect();
                    if parts.len() > 2 {
                        parts[2] = "S";
                    }
                    data = parts.join(" ");
                }
                format!("{} {} {}", r.name.to_lowercase(), r.rtype, data)
            })
            .collect();
        v.sort();
        v
    };
    Answer {
        rcode: d.status.clone(),
        answer: records(&d.answer),
        authority: records(&d.authority),
        additional: records(&d.additional),
    }
}

impl Answer {
    /// One line for the table: rcode and answer (authority as `+SOA`, additional as glue).
    fn show(&self, names: &BTreeMap<String, String>) -> String {
        let mut s = self.rcode.clone();
        if !self.answer.is_empty() {
            // Sorted after the addresses become pod names: sorted by address, the order
            // would change with the addresses a run hands out.
            let mut data: Vec<String> = self
                .answer
                .iter()
                .map(|r| symbolic(r.split_once(' ').map_or("", |x| x.1), names))
                .collect();
            data.sort();
            s.push_str(": ");
            s.push_str(&data.join(", "));
        }
        if self.authority.iter().any(|r| r.contains(" SOA ")) {
            s.push_str(" +SOA");
        }
        if !self.additional.is_empty() {
            s.push_str(&format!(" +{} glue", self.additional.len()));
        }
        symbolic(&s, names)
    }
}

/// `text` with each pod address replaced by `<pod>`, so the table does not depend on which
/// addresses a run handed out.
fn symbolic(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    // Longest first: 10.1.1.10 before 10.1.1.1.
    let mut ips: Vec<(&String, &String)> = names.iter().collect();
    ips.sort_by_key(|(ip, _)| std::cmp::Reverse(ip.len()));
    for (ip, pod) in ips {
        out = out.replace(ip.as_str(), &format!("<{pod}>"));
    }
    out
}

/// One question of the comparison.
struct Question {
    /// What state the name is in, for the table.
    case: String,
    rtype: &'static str,
    name: String,
    /// The name is of a set whose governing Service is not headless.
    not_headless: bool,
    /// How the table shows the question when not `<type> <name>`.
    shown: Option<String>,
}

/// The reason a difference is intended, as docs/coredns.md lists them; `None`: not intended.
fn classify(q: &Question, petdns: &Answer, coredns: &Answer) -> Option<&'static str> {
    let nodata = |a: &Answer| a.rcode == "NOERROR" && a.answer.is_empty();
    let labels: Vec<&str> = q.name.trim_end_matches('.').split('.').collect();
    let port_name = labels.len() > 2
        && labels[0].starts_with('_')
        && (labels[1] == "_tcp" || labels[1] == "_udp");
    // petdns serves StatefulSet identities under headless governing Services only.
    if q.not_headless && petdns.rcode == "NXDOMAIN" {
        return Some("headless-services-only");
    }
    // The identity's facts, a petdns extension; CoreDNS has no record there (or no name).
    if q.rtype == "TXT"
        && petdns.rcode == "NOERROR"
        && !petdns.answer.is_empty()
        && coredns.answer.is_empty()
    {
        return Some("identity-txt");
    }
    // A and AAAA on `_<port>._<proto>.<svc>`: CoreDNS answers the endpoints' addresses.
    if port_name && (q.rtype == "A" || q.rtype == "AAAA") && nodata(petdns) {
        return Some("no-addresses-on-port-names");
    }
    // petdns answers NODATA where CoreDNS says the name does not exist: a declared ordinal
    // with nothing published, a governing Service whose pods are all unpublished, and the
    // `_<proto>` empty non-terminal above a named port.
    if nodata(petdns) && coredns.rcode == "NXDOMAIN" {
        if labels.first().is_some_and(|l| *l == "_tcp" || *l == "_udp") {
            return Some("empty-non-terminal");
        }
        return Some("declared-names-never-nxdomain");
    }
    // The same SRV records but for the weight: CoreDNS counts addresses, petdns records.
    let without_weight = |a: &Answer| -> Vec<String> {
        a.answer
            .iter()
            .map(|r| {
                let mut p: Vec<&str> = r.split_whitespace().collect();
                if p.get(1) == Some(&"SRV") && p.len() > 3 {
                    p[3] = "W";
                }
                p.join(" ")
            })
            .collect()
    };
    if q.rtype == "SRV"
        && petdns.rcode == coredns.rcode
        && petdns.additional == coredns.additional
        && without_weight(petdns) == without_weight(coredns)
    {
        return Some("srv-weight-counts-records");
    }
    // The same answer but for the reverse zone's SOA (MNAME and RNAME).
    let reverse_soa = |a: &Answer| {
        a.authority.len() == 1
            && (a.authority[0].starts_with("in-addr.arpa. SOA ")
                || a.authority[0].starts_with("ip6.arpa. SOA "))
    };
    if petdns.rcode == coredns.rcode
        && petdns.answer == coredns.answer
        && petdns.additional == coredns.additional
        && reverse_soa(petdns)
        && reverse_soa(coredns)
    {
        return Some("reverse-zone-soa");
    }
    None
}

/// The questions for set `set` (pods `0..declared + 1`) under Service `svc` in `ns`.
fn questions_for(
    ns: &str,
    svc: &str,
    set: &str,
    declared: i32,
    case: &str,
    not_headless: bool,
    out: &mut Vec<Question>,
) {
    let service = format!("{svc}.{ns}.svc.cluster.local.");
    let mut q = |rtype: &'static str, name: String, what: &str| {
        out.push(Question {
            case: format!("{case}: {what}"),
            rtype,
            name,
            not_headless,
            shown: None,
        })
    };
    for rtype in ["A", "AAAA", "SRV", "TXT", "MX"] {
        q(rtype, service.clone(), "the Service");
    }
    for o in 0..=declared {
        let what = if o < declared {
            format!("{set}-{o}")
        } else {
            format!("{set}-{o} (not declared)")
        };
        for rtype in ["A", "AAAA", "SRV", "TXT"] {
            q(rtype, format!("{set}-{o}.{service}"), &what);
        }
    }
    q("SRV", format!("_http._tcp.{service}"), "named port");
    q(
        "SRV",
        format!("http.tcp.{service}"),
        "named port, other spelling",
    );
    q("SRV", format!("_dns._udp.{service}"), "named UDP port");
    q(
        "SRV",
        format!("_http._udp.{service}"),
        "port on the wrong protocol",
    );
    q("SRV", format!("_nope._tcp.{service}"), "no such port");
    q("A", format!("_http._tcp.{service}"), "A on a port name");
    q("A", format!("_tcp.{service}"), "the _tcp label");
    q("A", format!("x.{set}-0.{service}"), "below a pod name");
}

/// The StatefulSet `name` (governing Service `svc`) with the diff's ports, as a manifest.
fn set_manifest(name: &str, svc: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": svc, "replicas": replicas, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [
                             {"name": "http", "containerPort": 8080},
                             {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
                         ]}]}},
        },
    })
}

/// A Service `name` selecting `app=<selects>`: headless unless `cluster_ip`.
fn service_manifest(name: &str, selects: &str, headless: bool, extra: Value) -> Value {
    let mut spec = json!({
        "selector": {"app": selects},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
        ],
    });
    if headless {
        spec["clusterIP"] = json!("None");
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            spec[k] = v;
        }
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// Every pod address of `ns`, to its pod name.
fn pod_addresses(plane: &ControlPlane, ns: &str, names: &mut BTreeMap<String, String>) {
    let pods: Value =
        serde_json::from_str(&plane.kubectl(&["get", "pods", "-n", ns, "-o", "json"]))
            .expect("json");
    for p in pods["items"].as_array().into_iter().flatten() {
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        for ip in p["status"]["podIPs"].as_array().into_iter().flatten() {
            if let Some(ip) = ip["ip"].as_str() {
                names.insert(ip.to_string(), name.clone());
            }
        }
    }
}

/// The reverse name of an address, as `dig -x` would ask.
fn reverse(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>().expect("an address") {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

#[test]
fn coredns_and_petdns_answer_alike_but_for_the_listed_differences() {
    let Some(s) = shared() else { return };
    let (p, petdns) = (s.plane, &s.petdns.dns);
    let coredns = CoreDns::start(p, "pods verified", "");
    let ns = namespace(p, "dnsdiff");
    let dual = namespace(p, "dnsdiff-dual");
    s.kubelet.dual_stack(&dual);
    s.kubelet.set(&ns, "web-1", Readiness::NotReady);
    s.kubelet.set(&ns, "web-2", Readiness::NoAddress);
    s.kubelet.set(&ns, "pub-1", Readiness::NotReady);
    let items = vec![
        service_manifest("web", "web", true, json!({})),
        set_manifest("web", "web", 4),
        service_manifest(
            "pub",
            "pub",
            true,
            json!({"publishNotReadyAddresses": true}),
        ),
        set_manifest("pub", "pub", 2),
        service_manifest("down", "down", true, json!({})),
        set_manifest("down", "down", 3),
        service_manifest("cip", "cip", false, json!({})),
        set_manifest("cip", "cip", 1),
        set_manifest("orphan", "missing", 1),
    ];
    apply(
        p,
        &ns,
        &json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    );
    let dual_items = vec![
        service_manifest(
            "dual",
            "dual",
            true,
            json!({"ipFamilyPolicy": "PreferDualStack"}),
        ),
        set_manifest("dual", "dual", 2),
    ];
    apply(
        p,
        &dual,
        &json!({"apiVersion": "v1", "kind": "List", "items": dual_items}).to_string(),
    );

    // The states: web-0 Ready, web-1 not Ready, web-2 without an address, web-3 Terminating
    // (held by a finalizer); pub-0 Ready and pub-1 not (publishNotReadyAddresses); down
    // scaled from 3 to 1; cip behind a ClusterIP Service; orphan without its Service.
    for pod in [
        "web-0", "web-1", "web-3", "pub-0", "pub-1", "down-2", "cip-0", "orphan-0",
    ] {
        wait_pod_ip(p, &ns, pod);
    }
    for pod in ["dual-0", "dual-1"] {
        wait_pod_ip(p, &dual, pod);
    }
    p.kubectl(&[
        "patch",
        "-n",
        &ns,
        "pod/web-3",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["petdns.test/hold"]}}"#,
    ]);
    p.kubectl(&["delete", "pod", "-n", &ns, "web-3", "--wait=false"]);
    p.kubectl(&["scale", "-n", &ns, "statefulset/down", "--replicas=1"]);
    wait(SLOW, || {
        (field(p, &ns, "pod", "{.items[*].metadata.name}")
            .split(' ')
            .filter(|n| n.starts_with("down-"))
            .count()
            == 1)
            .then_some(())
    })
    .expect("down scaled to 1");

    let mut names = BTreeMap::new();
    pod_addresses(p, &ns, &mut names);
    pod_addresses(p, &dual, &mut names);
    names.insert(
        field(p, &ns, "svc/cip", "{.spec.clusterIP}"),
        "ClusterIP of cip".into(),
    );
    let mut questions = Vec::new();
    let cases = [
        (ns.as_str(), "web", "web", 4, "web", false),
        (
            &ns,
            "pub",
            "pub",
            2,
            "pub (publishNotReadyAddresses)",
            false,
        ),
        (&ns, "down", "down", 1, "down (scaled from 3 to 1)", false),
        (&ns, "cip", "cip", 1, "cip (Service not headless)", true),
        (
            &ns,
            "missing",
            "orphan",
            1,
            "orphan (Service missing)",
            false,
        ),
        (&dual, "dual", "dual", 2, "dual (dual-stack)", false),
    ];
    for (ns, svc, set, declared, case, not_headless) in cases {
        questions_for(ns, svc, set, declared, case, not_headless, &mut questions);
    }
    for (ip, pod) in &names {
        questions.push(Question {
            case: format!("PTR of {pod}"),
            rtype: "PTR",
            name: reverse(ip),
            not_headless: pod.contains("cip"),
            shown: Some(format!("PTR -x <{pod}>")),
        });
    }
    for (case, rtype, name) in [
        (
            "unknown address",
            "PTR",
            "250.100.51.198.in-addr.arpa.".to_string(),
        ),
        ("namespace", "A", format!("{ns}.svc.cluster.local.")),
        ("svc", "A", "svc.cluster.local.".into()),
        ("apex", "SOA", "cluster.local.".into()),
        ("dns-version", "TXT", "dns-version.cluster.local.".into()),
        (
            "no such Service",
            "A",
            format!("nosuch.{ns}.svc.cluster.local."),
        ),
        (
            "no such namespace",
            "A",
            "web.nosuch.svc.cluster.local.".into(),
        ),
    ] {
        questions.push(Question {
            case: case.into(),
            rtype,
            name,
            not_headless: false,
            shown: None,
        });
    }

    // Both servers see the same state: wait until web-0 answers on each and the Terminating
    // pod is gone from both, then compare.
    let web0 = format!("web-0.web.{ns}.svc.cluster.local.");
    for server in [petdns.dns, coredns.dns] {
        wait(SLOW, || {
            (!dig(server, &["A", &web0]).answer.is_empty()).then_some(())
        })
        .unwrap_or_else(|| panic!("{web0} never answered on {server}\n{}", coredns.log()));
    }
    std::thread::sleep(Duration::from_secs(3));

    let mut same = 0;
    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    let mut unlisted = Vec::new();
    for q in &questions {
        for transport in ["udp", "tcp"] {
            let args: Vec<&str> = if transport == "tcp" {
                vec!["+tcp", q.rtype, &q.name]
            } else {
                vec![q.rtype, &q.name]
            };
            let a = normalise(&dig(petdns.dns, &args));
            let b = normalise(&dig(coredns.dns, &args));
            if a == b {
                same += 1;
                continue;
            }
            let reason = classify(q, &a, &b);
            let row = (
                q.case.clone(),
                q.shown
                    .clone()
                    .unwrap_or_else(|| symbolic(&format!("{} {}", q.rtype, q.name), &names)),
                a.show(&names),
                b.show(&names),
                reason.unwrap_or("NOT LISTED").to_string(),
            );
            if reason.is_none() {
                unlisted.push(format!(
                    "{row:?} over {transport}\n  petdns:  {a:?}\n  CoreDNS: {b:?}"
                ));
            }
            if transport == "udp" || !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    rows.sort();
    rows.dedup();
    let mut table = format!(
        "{} questions over UDP and TCP ({} answers compared): {same} the same, {} differ.\n\n\
         | case | question | petdns | CoreDNS | reason |\n|---|---|---|---|---|\n",
        questions.len(),
        questions.len() * 2,
        questions.len() * 2 - same,
    );
    for (case, question, a, b, reason) in &rows {
        table.push_str(&format!(
            "| {case} | `{question}` | {a} | {b} | {reason} |\n"
        ));
    }
    eprintln!("{table}");
    assert!(
        unlisted.is_empty(),
        "differences docs/coredns.md does not list:\n{}",
        unlisted.join("\n")
    );

    let doc_path = repo().join("docs/coredns.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/coredns.md");
    for (_, _, _, _, reason) in &rows {
        assert!(
            doc.contains(&format!("**{reason}**")),
            "docs/coredns.md does not explain the reason {reason}"
        );
    }
    let (start, end) = ("<!-- diff:start -->\n", "<!-- diff:end -->");
    let (Some(i), Some(j)) = (doc.find(start), doc.find(end)) else {
        panic!("docs/coredns.md has no {start:?} ... {end:?} section for the table");
    };
    let current = &doc[i + start.len()..j];
    if current != table {
        if std::env::var("PETDNS_WRITE_DOCS").is_ok_and(|v| v == "1") {
            let new = format!("{}{table}{}", &doc[..i + start.len()], &doc[j..]);
            std::fs::write(&doc_path, new).expect("write docs/coredns.md");
        } else {
            panic!(
                "the table in docs/coredns.md is not what this run found; rerun with \
                 PETDNS_WRITE_DOCS=1 to write it:\n{table}"
            );
        }
    }
}
