//! Cluster mode against the real thing: kube-apiserver, etcd and kube-controller-manager
//! v1.37 built from their Go modules (`scripts/k8s-up.sh`), deploy/ applied as shipped,
//! `petdns controller` (two replicas, real Leases) and `petdns serve --kube` running with the
//! tokens of the ServiceAccounts deploy/ creates, and the real StatefulSet controller making
//! the pods. The test plays scheduler and kubelet (`kubelet.rs`); answers are checked with dig.
//!
//! Most tests share one control plane and one petdns installation, each in a namespace of its
//! own, as workloads share a cluster; the two that take a component down (a controller replica
//! killed, the API server restarted) get a plane of their own.
//!
//! Where Go is missing (and no control plane was built before) every test says loudly that it
//! was skipped and why; under CI (`CI=true`) that is a failure instead.

#[path = "../support/rbac.rs"]
mod rbac;
#[path = "../support/mod.rs"]
mod support;

mod coredns;
mod costs;
mod kubelet;
mod petdns;
mod plane;
mod traffic;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kubelet::{Kubelet, Readiness};
use petdns::Petdns;
use plane::ControlPlane;
use support::{Dig, Server};

/// How long anything that goes through the StatefulSet controller may take to show in DNS.
const SLOW: Duration = Duration::from_secs(45);

/// The plane, kubelet and petdns installation the tests share.
struct Shared {
    plane: &'static ControlPlane,
    kubelet: Kubelet,
    petdns: Petdns,
}

/// The shared cluster, or `None` when it cannot be had here (see the module docs).
fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    if !plane::available() {
        return None;
    }
    Some(SHARED.get_or_init(|| {
        let plane = ControlPlane::shared();
        let kubelet = Kubelet::start(plane, &["node-a", "node-b"]);
        let petdns = Petdns::install(plane, true);
        Shared {
            plane,
            kubelet,
            petdns,
        }
    }))
}

/// A cluster of one test's own.
struct Own {
    plane: ControlPlane,
    /// Plays scheduler and kubelet until dropped.
    _kubelet: Kubelet,
    petdns: Petdns,
}

fn own(node_grace_seconds: u32) -> Option<Own> {
    if !plane::available() {
        return None;
    }
    let plane = ControlPlane::start(node_grace_seconds);
    let kubelet = Kubelet::start(&plane, &["node-a"]);
    let petdns = Petdns::install(&plane, false);
    Some(Own {
        plane,
        _kubelet: kubelet,
        petdns,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Polls every 100 ms until `f` gives `Some`, or `None` after `deadline`.
fn wait<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A namespace for one test, enforcing Pod Security "baseline" (the real admission plugin
/// checks every pod the StatefulSet controller creates).
fn namespace(plane: &ControlPlane, name: &str) -> String {
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        &json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }},
        })
        .to_string(),
    );
    name.to_string()
}

/// examples/kubia.yaml, with `replicas` and `extra` merged into the StatefulSet's spec.
fn kubia(replicas: u32, extra: Value) -> String {
    let text = std::fs::read_to_string(plane::repo().join("examples/kubia.yaml")).expect("kubia");
    let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
        .expect("kubia.yaml")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    let mut out = Vec::new();
    for mut d in docs {
        if d["kind"] == "StatefulSet" {
            d["spec"]["replicas"] = json!(replicas);
            if let Value::Object(extra) = &extra {
                for (k, v) in extra {
                    d["spec"][k] = v.clone();
                }
            }
        }
        out.push(d);
    }
    json!({"apiVersion": "v1", "kind": "List", "items": out}).to_string()
}

fn apply(plane: &ControlPlane, ns: &str, manifest: &str) {
    plane.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], manifest);
}

/// `<pod>.<svc>.<ns>.svc.cluster.local`
fn host(pod: &str, svc: &str, ns: &str) -> String {
    format!("{pod}.{svc}.{ns}.svc.cluster.local")
}

fn dig(dns: &Server, rtype: &str, name: &str) -> Dig {
    dns.dig(&[rtype, name])
}

/// Waits until `rtype name` answers exactly `want` (sorted data strings).
#[track_caller]
fn wait_answers(dns: &Server, rtype: &str, name: &str, want: &[String]) -> Dig {
    let mut want = want.to_vec();
    want.sort();
    let mut last = None;
    let got = wait(SLOW, || {
        let d = dig(dns, rtype, name);
        let ok = d.status == "NOERROR" && d.answers(rtype) == want;
        last = Some(d.clone());
        ok.then_some(d)
    });
    got.unwrap_or_else(|| {
        panic!(
            "{rtype} {name} never answered {want:?}; last:\n{}\n{}",
            last.map(|d| d.to_string()).unwrap_or_default(),
            dns.log_dump()
        )
    })
}

/// Waits until `rtype name` gets `status` with an empty answer (NODATA or NXDOMAIN).
#[track_caller]
fn wait_negative(dns: &Server, rtype: &str, name: &str, status: &str) -> Dig {
    let mut last = None;
    wait(SLOW, || {
        let d = dig(dns, rtype, name);
        let ok = d.status == status && d.answer.is_empty();
        last = Some(d.clone());
        ok.then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "{rtype} {name} never answered {status} without records; last:\n{}\n{}",
            last.map(|d| d.to_string()).unwrap_or_default(),
            dns.log_dump()
        )
    })
}

/// One field of an object, by kubectl's jsonpath.
fn field(plane: &ControlPlane, ns: &str, object: &str, path: &str) -> String {
    let out = plane.kubectl_output(&["get", "-n", ns, object, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pod's address as the kubelet gave it.
fn pod_ip(plane: &ControlPlane, ns: &str, pod: &str) -> String {
    field(plane, ns, &format!("pod/{pod}"), "{.status.podIP}")
}

/// Waits until pod `ns/pod` has an address; returns it.
#[track_caller]
fn wait_pod_ip(plane: &ControlPlane, ns: &str, pod: &str) -> String {
    wait(SLOW, || {
        Some(pod_ip(plane, ns, pod)).filter(|ip| !ip.is_empty())
    })
    .unwrap_or_else(|| panic!("pod {ns}/{pod} never got an address"))
}

/// The TXT strings of an identity, as `key=value` pairs.
fn txt(dns: &Server, name: &str) -> Vec<String> {
    let d = dig(dns, "TXT", name);
    d.answers("TXT")
        .first()
        .map(|t| {
            t.split('"')
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the identity's TXT record holds `want` (a `key=value`).
#[track_caller]
fn wait_txt(dns: &Server, name: &str, want: &str) -> Vec<String> {
    let mut last = Vec::new();
    wait(SLOW, || {
        last = txt(dns, name);
        last.iter().any(|s| s == want).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "TXT {name} never held {want:?}; last {last:?}\n{}",
            dns.log_dump()
        )
    })
}

/// `0 <weight> 80 <target>.` for each pod of kubia in `ns`.
fn kubia_srv(ns: &str, pods: &[&str]) -> Vec<String> {
    let weight = (100 / pods.len()).max(1);
    pods.iter()
        .map(|p| format!("0 {weight} 80 {}.", host(p, "kubia", ns)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// deploy/ as shipped, and least privilege as the real authorizer sees it
// ---------------------------------------------------------------------------------------------

/// The CRD is Established with its names accepted; the pods of the controller Deployment and
/// the DNS DaemonSet pass the namespace's Pod Security "restricted" (the real admission plugin,
/// server-side dry run), and a privileged pod there is refused, so the check is live.
#[test]
fn deploy_is_accepted_as_shipped_and_its_pods_pass_pod_security() {
    let Some(s) = shared() else { return };
    let p = s.plane;
    for condition in ["Established", "NamesAccepted"] {
        assert_eq!(
            field(
                p,
                "default",
                "crd/peersets.petdns.io",
                &format!("{{.status.conditions[?(@.type==\"{condition}\")].status}}")
            ),
            "True",
            "{condition}"
        );
    }
    for workload in ["deployment/petdns-controller", "daemonset/petdns-dns"] {
        let obj: Value =
            serde_json::from_str(&p.kubectl(&["get", "-n", "petdns", workload, "-o", "json"]))
                .expect("json");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod-security-check", "namespace": "petdns"},
            "spec": obj["spec"]["template"]["spec"],
        });
        let out = p.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &pod.to_string());
        assert!(
            out.contains("created (server dry run)"),
            "{workload}: {out}"
        );
    }
    let privileged = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": "petdns"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                 "securityContext": {"privileged": true}}]},
    });
    let out = std::process::Command::new(p.dir.join("bin/kubectl"))
        .arg("--kubeconfig")
        .arg(&p.kubeconfig)
        .args(["create", "--dry-run=server", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(privileged.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .expect("kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("violates PodSecurity \"restricted"),
        "a privileged pod in the petdns namespace must be refused: {err}"
    );
}

/// Every call the code makes (tests/support/rbac.rs) is allowed to its ServiceAccount by the
/// real RBAC authorizer, and what the code never does is refused: the DNS server reads
/// PeerSets and nothing else.
#[test]
fn least_privilege_as_the_real_authorizer_sees_it() {
    let Some(s) = shared() else { return };
    let p = s.plane;
    let account = |role: &str| {
        rbac::BINDINGS
            .iter()
            .find(|(_, r, _)| *r == role)
            .map(|(_, _, sa)| format!("system:serviceaccount:petdns:{sa}"))
            .expect("a binding for the role")
    };
    let can = |who: &str, verb: &str, resource: &str, scope: &[&str]| -> bool {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", who];
        args.extend_from_slice(scope);
        let out = p.kubectl_output(&args);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            said == "yes" || said == "no",
            "kubectl {}: {said} {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        said == "yes"
    };
    let mut wrong = Vec::new();
    for need in rbac::NEEDS {
        let who = account(need.role);
        let namespaced = need.role.starts_with("Role/");
        for resource in need.resources {
            let (res, sub) = match resource.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (*resource, None),
            };
            let group = if need.group.is_empty() {
                String::new()
            } else {
                format!(".{}", need.group)
            };
            let names: Vec<String> = if need.names.is_empty() {
                vec![String::new()]
            } else {
                need.names.iter().map(|n| format!("/{n}")).collect()
            };
            for name in &names {
                for verb in need.verbs {
                    let target = format!("{res}{group}{name}");
                    let mut scope = vec![];
                    let sub_flag;
                    if let Some(sub) = sub {
                        sub_flag = format!("--subresource={sub}");
                        scope.push(sub_flag.as_str());
                    }
                    if namespaced {
                        scope.extend(["-n", "petdns"]);
                    } else {
                        scope.push("--all-namespaces");
                    }
                    if !can(&who, verb, &target, &scope) {
                        wrong.push(format!(
                            "refused, but {} needs it: {who} {verb} {target} {scope:?}",
                            need.call
                        ));
                    }
                }
            }
        }
    }
    let dns = account("ClusterRole/petdns-dns");
    let controller = account("ClusterRole/petdns-controller");
    let refused: &[(&str, &str, &str, &[&str])] = &[
        (&dns, "list", "pods", &["--all-namespaces"]),
        (&dns, "get", "secrets", &["-n", "petdns"]),
        (&dns, "list", "secrets", &["--all-namespaces"]),
        (&dns, "list", "statefulsets.apps", &["--all-namespaces"]),
        (&dns, "list", "services", &["--all-namespaces"]),
        (&dns, "list", "nodes", &[]),
        (&dns, "create", "peersets.petdns.io", &["-n", "default"]),
        (&dns, "patch", "peersets.petdns.io", &["-n", "default"]),
        (&dns, "delete", "peersets.petdns.io", &["-n", "default"]),
        (
            &dns,
            "patch",
            "peersets.petdns.io",
            &["--subresource=status", "-n", "default"],
        ),
        (&dns, "create", "events.events.k8s.io", &["-n", "default"]),
        (&dns, "get", "leases.coordination.k8s.io", &["-n", "petdns"]),
        (&controller, "list", "secrets", &["--all-namespaces"]),
        (&controller, "get", "configmaps", &["-n", "petdns"]),
        (&controller, "create", "pods", &["-n", "default"]),
        (&controller, "delete", "pods", &["-n", "default"]),
        (
            &controller,
            "patch",
            "statefulsets.apps",
            &["-n", "default"],
        ),
        (&controller, "patch", "nodes", &[]),
        (&controller, "patch", "services", &["-n", "default"]),
        (
            &controller,
            "patch",
            "leases.coordination.k8s.io/other",
            &["-n", "petdns"],
        ),
        (
            &controller,
            "create",
            "leases.coordination.k8s.io",
            &["-n", "kube-system"],
        ),
    ];
    for (who, verb, resource, scope) in refused {
        if can(who, verb, resource, scope) {
            wrong.push(format!(
                "allowed, but the code never does it: {who} {verb} {resource} {scope:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC as the real authorizer sees it:\n  {}",
        wrong.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// The StatefulSet notes, on the real StatefulSet controller
// ---------------------------------------------------------------------------------------------

/// examples/kubia.yaml, unmodified, in `default`: the real controller creates kubia-0, waits
/// for it to be Ready, then creates kubia-1; petdns answers NODATA (not NXDOMAIN) for the
/// declared names meanwhile, then the seed's `dig SRV kubia.default.svc.cluster.local`.
#[test]
fn kubia_comes_up_in_order_and_answers_as_the_example_says() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    s.kubelet.set("default", "kubia-0", Readiness::NotReady);
    let manifest = std::fs::read_to_string(plane::repo().join("examples/kubia.yaml")).unwrap();
    apply(p, "default", &manifest);
    wait_pod_ip(p, "default", "kubia-0");
    // kubia-0 is Running but not Ready: the controller does not go on to kubia-1.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        field(p, "default", "pod", "{.items[*].metadata.name}"),
        "kubia-0"
    );
    wait_negative(dns, "SRV", "kubia.default.svc.cluster.local", "NOERROR");
    wait_negative(dns, "A", &host("kubia-1", "kubia", "default"), "NOERROR");
    wait_txt(dns, &host("kubia-0", "kubia", "default"), "state=NotReady");

    s.kubelet.set("default", "kubia-0", Readiness::Ready);
    let d = wait_answers(
        dns,
        "SRV",
        "kubia.default.svc.cluster.local",
        &kubia_srv("default", &["kubia-0", "kubia-1"]),
    );
    // The seed's answer, as examples/kubia.dig.txt records it (addresses aside).
    let example = std::fs::read_to_string(plane::repo().join("examples/kubia.dig.txt")).unwrap();
    for srv in d.answers("SRV") {
        assert!(
            example.contains(&srv),
            "{srv} is not in examples/kubia.dig.txt"
        );
    }
    let ips = [
        pod_ip(p, "default", "kubia-0"),
        pod_ip(p, "default", "kubia-1"),
    ];
    let mut glue: Vec<String> = ["kubia-0", "kubia-1"]
        .iter()
        .zip(&ips)
        .map(|(pod, ip)| format!("{}. A {ip}", host(pod, "kubia", "default")))
        .collect();
    glue.sort();
    assert_eq!(d.glue(), glue, "{d}");
    // The TXT facts come from the real objects: revision = controller-revision-hash.
    let revision = field(
        p,
        "default",
        "pod/kubia-0",
        "{.metadata.labels.controller-revision-hash}",
    );
    let facts = txt(dns, &host("kubia-0", "kubia", "default"));
    assert_eq!(
        facts,
        [
            "ordinal=0".to_string(),
            "set=kubia".into(),
            "state=Ready".into(),
            format!("revision={revision}"),
            "claims=data-kubia-0".into(),
        ]
    );
    // PTR of a pod's address names it.
    let d = dns.dig(&["-x", &ips[1]]);
    assert_eq!(
        d.answers("PTR"),
        [format!("{}.", host("kubia-1", "kubia", "default"))],
        "{d}"
    );
}

/// `kubectl scale`: names appear in ordinal order and leave from the highest; the claims stay
/// after a scale-down (Retain) and the TXT record shows them; a scaled-up ordinal gets its old
/// claim back.
#[test]
fn scale_up_and_down_in_order_and_claims_are_kept() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "scale");
    apply(p, &ns, &kubia(2, json!({})));
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0", "kubia-1"]),
    );

    // Up: kubia-3 never answers while kubia-2 does not. The two may appear within one dig of
    // each other (the whole scale-up takes ~100 ms here), so kubia-3 is asked first: kubia-2
    // still silent after kubia-3 answered means it was silent then too. (Asking kubia-2 first
    // failed about one run in three without any fault: both appeared between the two digs.)
    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=4"]);
    let up = |pod: &str| {
        !dig(dns, "A", &host(pod, "kubia", &ns))
            .answers("A")
            .is_empty()
    };
    wait(SLOW, || {
        let up3 = up("kubia-3");
        let up2 = up("kubia-2");
        assert!(up2 || !up3, "kubia-3 answered before kubia-2");
        (up2 && up3).then_some(())
    })
    .expect("kubia-2 and kubia-3 both answer");
    let claim_uid = |n: u32| field(p, &ns, &format!("pvc/data-kubia-{n}"), "{.metadata.uid}");
    let uid3 = claim_uid(3);
    assert!(!uid3.is_empty());

    // Down to 2: kubia-3 leaves first, and kubia-2 only after it; for the same reason as
    // above, kubia-2 is asked first.
    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=2"]);
    wait(SLOW, || {
        let gone = |pod: &str| dig(dns, "A", &host(pod, "kubia", &ns)).status == "NXDOMAIN";
        let gone2 = gone("kubia-2");
        let gone3 = gone("kubia-3");
        assert!(gone3 || !gone2, "kubia-2 left while kubia-3 still answered");
        (gone2 && gone3).then_some(())
    })
    .expect("kubia-2 and kubia-3 leave");
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0", "kubia-1"]),
    );
    // Retain: the claims of the removed ordinals are still there.
    assert_eq!(claim_uid(3), uid3, "data-kubia-3 kept after scale-down");
    assert!(
        !claim_uid(2).is_empty(),
        "data-kubia-2 kept after scale-down"
    );
    wait_txt(dns, &host("kubia-1", "kubia", &ns), "claims=data-kubia-1");

    // Up to 4 again: kubia-3 gets its old claim back (same object) and TXT names it.
    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=4"]);
    wait_txt(dns, &host("kubia-3", "kubia", &ns), "claims=data-kubia-3");
    assert_eq!(
        claim_uid(3),
        uid3,
        "the scaled-up ordinal's claim is the old one"
    );
    let volume = wait(SLOW, || {
        Some(field(
            p,
            &ns,
            "pod/kubia-3",
            "{.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
        ))
        .filter(|v| !v.is_empty())
    });
    assert_eq!(
        volume.as_deref(),
        Some("data-kubia-3"),
        "the new kubia-3 mounts the old claim"
    );
    wait_txt(dns, &host("kubia-3", "kubia", &ns), "state=Ready");
}

/// `kubectl delete pod kubia-0`: the replacement gets a new address, and the name never
/// answers NXDOMAIN in between (NODATA while it is Terminating, gone, Pending, not Ready).
#[test]
fn a_deleted_pod_comes_back_with_a_new_address_and_never_nxdomain() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "replace");
    apply(p, &ns, &kubia(2, json!({})));
    let name = host("kubia-0", "kubia", &ns);
    let old = wait_pod_ip(p, &ns, "kubia-0");
    wait_answers(dns, "A", &name, std::slice::from_ref(&old));
    let old_uid = field(p, &ns, "pod/kubia-0", "{.metadata.uid}");

    p.kubectl(&["delete", "pod", "-n", &ns, "kubia-0", "--wait=false"]);
    let mut statuses = Vec::new();
    let new = wait(SLOW, || {
        let d = dig(dns, "A", &name);
        statuses.push(d.status.clone());
        assert_ne!(
            d.status, "NXDOMAIN",
            "kubia-0 answered NXDOMAIN while replaced\n{d}"
        );
        d.answers("A").into_iter().find(|a| *a != old)
    })
    .unwrap_or_else(|| panic!("kubia-0 never answered a new address; statuses {statuses:?}"));
    let uid = field(p, &ns, "pod/kubia-0", "{.metadata.uid}");
    assert_ne!(uid, old_uid, "a new pod");
    assert_eq!(new, pod_ip(p, &ns, "kubia-0"));
}

/// Rolling update with a partition, then OnDelete: the revision in TXT follows each pod's
/// `controller-revision-hash`, which the real controller moves only where the strategy says.
#[test]
fn rolling_update_partition_and_on_delete_revisions_follow_the_pods() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "rollout");
    apply(
        p,
        &ns,
        &kubia(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        ),
    );
    let name = |n: u32| host(&format!("kubia-{n}"), "kubia", &ns);
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0", "kubia-1", "kubia-2"]),
    );
    let first = field(p, &ns, "sts/kubia", "{.status.currentRevision}");
    for n in 0..3 {
        wait_txt(dns, &name(n), &format!("revision={first}"));
    }

    // A new template: only ordinals >= partition (kubia-2) move to it.
    let bump = |v: &str| {
        p.kubectl(&[
            "patch", "-n", &ns, "sts/kubia", "--type=merge", "-p",
            &json!({"spec": {"template": {"metadata": {"annotations": {"petdns.test/version": v}}}}}).to_string(),
        ]);
    };
    bump("2");
    let second = wait(SLOW, || {
        Some(field(p, &ns, "sts/kubia", "{.status.updateRevision}"))
            .filter(|r| !r.is_empty() && *r != first)
    })
    .expect("a new update revision");
    wait_txt(dns, &name(2), &format!("revision={second}"));
    std::thread::sleep(Duration::from_secs(2));
    for n in 0..2 {
        assert!(
            txt(dns, &name(n)).contains(&format!("revision={first}")),
            "kubia-{n} is below the partition"
        );
    }
    // Partition 0: the rest follow, highest first.
    p.kubectl(&[
        "patch",
        "-n",
        &ns,
        "sts/kubia",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    for n in [1, 0] {
        wait_txt(dns, &name(n), &format!("revision={second}"));
    }

    // OnDelete: a new template changes no pod until one is deleted.
    p.kubectl(&[
        "patch",
        "-n",
        &ns,
        "sts/kubia",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ]);
    bump("3");
    let third = wait(SLOW, || {
        Some(field(p, &ns, "sts/kubia", "{.status.updateRevision}"))
            .filter(|r| !r.is_empty() && *r != second)
    })
    .expect("a third revision");
    std::thread::sleep(Duration::from_secs(3));
    for n in 0..3 {
        assert!(
            txt(dns, &name(n)).contains(&format!("revision={second}")),
            "OnDelete: kubia-{n} unchanged"
        );
    }
    p.kubectl(&["delete", "pod", "-n", &ns, "kubia-1", "--wait=false"]);
    wait_txt(dns, &name(1), &format!("revision={third}"));
    for n in 0..3 {
        let label = field(
            p,
            &ns,
            &format!("pod/kubia-{n}"),
            "{.metadata.labels.controller-revision-hash}",
        );
        wait_txt(dns, &name(n), &format!("revision={label}"));
    }
}

/// `podManagementPolicy: Parallel` and `spec.ordinals.start`: all pods are created at once,
/// none waiting for another to be Ready, and the identities are numbered from `start`.
#[test]
fn parallel_pods_and_a_start_ordinal() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "parallel");
    for n in 5..8 {
        s.kubelet
            .set(&ns, &format!("kubia-{n}"), Readiness::NotReady);
    }
    apply(
        p,
        &ns,
        &kubia(
            3,
            json!({"podManagementPolicy": "Parallel", "ordinals": {"start": 5}}),
        ),
    );
    wait(SLOW, || {
        let names = field(p, &ns, "pod", "{.items[*].metadata.name}");
        (names == "kubia-5 kubia-6 kubia-7").then_some(())
    })
    .expect("all three pods exist while none is Ready");
    for n in 5..8 {
        wait_txt(
            dns,
            &host(&format!("kubia-{n}"), "kubia", &ns),
            "state=NotReady",
        );
        wait_negative(
            dns,
            "A",
            &host(&format!("kubia-{n}"), "kubia", &ns),
            "NOERROR",
        );
    }
    for outside in ["kubia-4", "kubia-8"] {
        wait_negative(dns, "A", &host(outside, "kubia", &ns), "NXDOMAIN");
    }
    for n in 5..8 {
        s.kubelet.set(&ns, &format!("kubia-{n}"), Readiness::Ready);
    }
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-5", "kubia-6", "kubia-7"]),
    );
    wait_txt(dns, &host("kubia-5", "kubia", &ns), "ordinal=5");
}

/// A node lost: its Lease is no longer renewed, the real node lifecycle controller marks the
/// Node Unknown and its pods not Ready, and the identities become NodeLost (identity.md) with
/// no address published.
#[test]
fn a_lost_node_makes_its_identities_node_lost() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "nodelost");
    s.kubelet.add_node("node-lost");
    s.kubelet.place(&ns, "node-lost");
    apply(p, &ns, &kubia(2, json!({})));
    let name = host("kubia-1", "kubia", &ns);
    let ip = wait_pod_ip(p, &ns, "kubia-1");
    wait_answers(dns, "A", &name, &[ip]);

    s.kubelet.lose_node("node-lost");
    wait(SLOW, || {
        let ready = field(
            p,
            "default",
            "node/node-lost",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "Unknown").then_some(())
    })
    .expect("the node lifecycle controller marks the Node Unknown");
    wait_txt(dns, &name, "state=NodeLost");
    wait(SLOW, || {
        let ready = field(
            p,
            &ns,
            "pod/kubia-1",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "False").then_some(())
    })
    .expect("the node lifecycle controller marks the pods not Ready");
    wait_negative(dns, "A", &name, "NOERROR");
    wait_negative(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        "NOERROR",
    );
}

/// The StatefulSet deleted: its PeerSet, owned by it, is deleted by the real garbage collector,
/// and the names go.
#[test]
fn a_deleted_statefulset_takes_its_peerset_and_names_with_it() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "gc");
    apply(p, &ns, &kubia(1, json!({})));
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0"]),
    );
    let set_uid = field(p, &ns, "sts/kubia", "{.metadata.uid}");
    let owner = field(
        p,
        &ns,
        "peerset/kubia",
        "{.metadata.ownerReferences[0].uid}",
    );
    assert_eq!(owner, set_uid, "the PeerSet is owned by its StatefulSet");
    let peerset_uid = field(p, &ns, "peerset/kubia", "{.metadata.uid}");
    let slice_owner = field(
        p,
        &ns,
        "peerslice/kubia.0",
        "{.metadata.ownerReferences[0].uid}",
    );
    assert_eq!(
        slice_owner, peerset_uid,
        "the slice is owned by its PeerSet"
    );
    p.kubectl(&["delete", "-n", &ns, "sts/kubia", "--wait=false"]);
    wait(SLOW, || {
        let out = p.kubectl_output(&["get", "-n", &ns, "peerset/kubia"]);
        let slices = field(p, &ns, "peerslices", "{.items[*].metadata.name}");
        (!out.status.success() && slices.is_empty()).then_some(())
    })
    .expect("the PeerSet and its slices are gone");
    wait_negative(dns, "A", &host("kubia-0", "kubia", &ns), "NXDOMAIN");
    // The Service stays: its name exists, with nothing under it.
    wait_negative(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        "NXDOMAIN",
    );
}

// ---------------------------------------------------------------------------------------------
// Components going down: planes of their own
// ---------------------------------------------------------------------------------------------

/// The leading controller replica killed with SIGKILL (no Lease release): the other takes the
/// Lease when it expires and changes flow again. Then, with no controller left at all, deleting
/// a StatefulSet still removes its PeerSet: the garbage collector does it through the owner
/// reference, not petdns.
#[test]
fn a_killed_controller_fails_over_and_owner_references_collect_peersets() {
    let Some(mut c) = own(40) else { return };
    let (p, dns) = (&c.plane, &c.petdns.dns);
    let ns = namespace(p, "failover");
    apply(p, &ns, &kubia(1, json!({})));
    wait_answers(
        dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0"]),
    );
    let leader = c.petdns.leader(p);
    let killed = c.petdns.controllers[leader].take().expect("running");
    let killed_at = Instant::now();
    killed.kill();
    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=2"]);
    wait_answers(
        &c.petdns.dns,
        "SRV",
        &format!("kubia.{ns}.svc.cluster.local"),
        &kubia_srv(&ns, &["kubia-0", "kubia-1"]),
    );
    let took = killed_at.elapsed();
    assert_eq!(
        c.petdns.leader(&c.plane),
        1 - leader,
        "the other replica leads"
    );
    eprintln!("failover: change answered {took:?} after SIGKILL of the leader (Lease 3 s)");

    // No controller at all: the real garbage collector removes the PeerSet of a deleted set.
    drop(c.petdns.controllers[1 - leader].take());
    let p = &c.plane;
    p.kubectl(&["delete", "-n", &ns, "sts/kubia", "--wait=false"]);
    wait(SLOW, || {
        let out = p.kubectl_output(&["get", "-n", &ns, "peerset/kubia"]);
        (!out.status.success()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the garbage collector never removed the PeerSet\n{}",
            p.log_tail("kube-controller-manager")
        )
    });
    wait_negative(
        &c.petdns.dns,
        "A",
        &host("kubia-0", "kubia", &ns),
        "NXDOMAIN",
    );
}

/// The API server stopped and started again, etcd kept: the DNS server keeps answering from
/// its last state all along, and resyncs when the API server is back.
#[test]
fn an_api_server_restart_keeps_answers_and_resyncs() {
    // A long node grace: the Nodes' Leases are not renewed while the API server is down, and
    // that is no node failure.
    let Some(mut c) = own(120) else { return };
    let ns = namespace(&c.plane, "restart");
    apply(&c.plane, &ns, &kubia(2, json!({})));
    let srv = format!("kubia.{ns}.svc.cluster.local");
    let two = kubia_srv(&ns, &["kubia-0", "kubia-1"]);
    wait_answers(&c.petdns.dns, "SRV", &srv, &two);

    c.plane.stop("kube-apiserver");
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(5) {
        let d = dig(&c.petdns.dns, "SRV", &srv);
        assert_eq!(
            d.answers("SRV"),
            two,
            "answers while the API server is down\n{d}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (ready, _) = c.petdns.dns.get("/readyz").expect("admin");
    assert_eq!(ready, 200, "still ready: the last state serves");
    c.plane.up(120);
    c.plane
        .kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=3"]);
    wait_answers(
        &c.petdns.dns,
        "SRV",
        &srv,
        &kubia_srv(&ns, &["kubia-0", "kubia-1", "kubia-2"]),
    );
    let errors = c
        .petdns
        .dns
        .metric("petdns_kube_watch_errors_total")
        .unwrap_or(0.0);
    assert!(errors > 0.0, "the outage was seen and counted: {errors}");
}

/// The misconfigurations identity.md names, as the real API server and StatefulSet controller
/// make them: each PeerSet carries the condition, the StatefulSet gets exactly one Warning
/// Event for it (the controller announced it once: see `controller/cache.rs`), the names get
/// no records, and `petdns explain --kube` gives the reason.
#[test]
fn misconfigurations_set_one_condition_and_one_event_each() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "misconfigured");
    let set = |name: &str, service: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "serviceName": service, "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        })
    };
    let service = |name: &str, cluster_ip: &str, selects: &str| {
        let mut spec =
            json!({"selector": {"app": selects}, "ports": [{"name": "web", "port": 80}]});
        if cluster_ip == "None" {
            spec["clusterIP"] = json!("None");
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
    };
    let items = vec![
        set("orphan", "missing"),
        service("clustered", "", "clustered"),
        set("clustered", "clustered"),
        service("picky", "None", "someone-else"),
        set("picky", "picky"),
    ];
    apply(
        p,
        &ns,
        &json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    );
    for (name, svc, reason) in [
        ("orphan", "missing", "ServiceNotFound"),
        ("clustered", "clustered", "ServiceNotHeadless"),
        ("picky", "picky", "SelectorMismatch"),
    ] {
        let path = "{.status.conditions[?(@.type==\"ServiceResolved\")].reason}";
        wait(SLOW, || {
            (field(p, &ns, &format!("peerset/{name}"), path) == reason).then_some(())
        })
        .unwrap_or_else(|| panic!("PeerSet {name} never got {reason}"));
        // Once its pod is Ready the set still has no records.
        wait(SLOW, || {
            (field(p, &ns, &format!("pod/{name}-0"), "{.status.phase}") == "Running").then_some(())
        })
        .expect("the pod runs");
        wait_negative(dns, "A", &host(&format!("{name}-0"), svc, &ns), "NXDOMAIN");
        let events: Value = serde_json::from_str(&p.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "json",
            "--field-selector",
            &format!("reason={reason},regarding.name={name}"),
        ]))
        .expect("events json");
        let items = events["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "one {reason} Event on {name}: {events:#}");
        assert!(
            items[0]["series"].is_null(),
            "announced once, not repeated: {:#}",
            items[0]
        );
        assert_eq!(items[0]["type"], "Warning");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_petdns"))
        .args([
            "explain",
            &format!("picky-0.picky.{ns}"),
            "--kube",
            "--kubeconfig",
        ])
        .arg(&p.kubeconfig)
        .output()
        .expect("petdns explain");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("SelectorMismatch") && said.contains("NXDOMAIN"),
        "{said}"
    );
    // kubectl prints the PeerSets without a warning about their schema.
    let out = p.kubectl_output(&["get", "peersets", "-n", &ns]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Warning"), "{err}");
}

/// A StatefulSet of 10,000 replicas (the declared bound) on the real API server: its PeerSet
/// and 100 slices of 100 are written and served (the pods stay unscheduled, so only kubia-0
/// exists: OrderedReady waits for it); `kubectl get peerslices -l petdns.io/peer-set=kubia`
/// shows each block and its ready count; scaled to 3 and back, exactly the slices the blocks
/// need are left.
#[test]
fn ten_thousand_replicas_are_served_through_a_hundred_slices() {
    let Some(s) = shared() else { return };
    let (p, dns) = (s.plane, &s.petdns.dns);
    let ns = namespace(p, "big");
    s.kubelet.set_namespace(&ns, Readiness::Unscheduled);
    apply(p, &ns, &kubia(10_000, json!({})));
    let slices = || field(p, &ns, "peerslices", "{.items[*].metadata.name}");
    let expect = |n: usize| -> String {
        let mut names: Vec<String> = (0..n).map(|k| format!("kubia.{k}")).collect();
        names.sort();
        names.join(" ")
    };
    wait(SLOW, || (slices() == expect(100)).then_some(()))
        .unwrap_or_else(|| panic!("never 100 slices: {}", slices().split(' ').count()));
    wait(SLOW, || {
        (field(p, &ns, "peerset/kubia", "{.status.slices}") == "100").then_some(())
    })
    .expect("the PeerSet counts its slices");
    let table = p.kubectl(&[
        "get",
        "peerslices",
        "-n",
        &ns,
        "-l",
        "petdns.io/peer-set=kubia",
    ]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "PEERSET", "BLOCK", "READY", "AGE"],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("kubia.42 "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["kubia", "42", "0/100"], "{row}");
    wait_negative(dns, "A", &host("kubia-9999", "kubia", &ns), "NOERROR");
    wait_txt(dns, &host("kubia-4242", "kubia", &ns), "state=Missing");
    wait_negative(dns, "A", &host("kubia-10000", "kubia", &ns), "NXDOMAIN");

    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=3"]);
    wait(SLOW, || (slices() == expect(1)).then_some(()))
        .unwrap_or_else(|| panic!("after the scale-down: {}", slices()));
    wait_negative(dns, "A", &host("kubia-3", "kubia", &ns), "NXDOMAIN");
    p.kubectl(&["scale", "-n", &ns, "statefulset/kubia", "--replicas=10000"]);
    wait(SLOW, || (slices() == expect(100)).then_some(()))
        .unwrap_or_else(|| panic!("after the scale-up: {}", slices().split(' ').count()));
    wait_negative(dns, "A", &host("kubia-9999", "kubia", &ns), "NOERROR");
}
