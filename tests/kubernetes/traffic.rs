//! Watch traffic per change, measured on the real API server (not in the default run: each
//! size brings up a StatefulSet of that many Ready pods):
//!
//! ```sh
//! cargo test --test kubernetes -- --ignored --nocapture watch_traffic
//! PETDNS_BIN=/path/to/older/petdns cargo test ...   # the controller of another release
//! PETDNS_TRAFFIC_SIZES=3,100 cargo test ...          # other set sizes (default 3,100,1000,10000)
//! PETDNS_TRAFFIC_LABEL=name cargo test ...           # the output file's name (default: the version)
//! ```
//!
//! For each size a plane of its own runs the StatefulSet (Parallel, one claim template, pods on
//! three Nodes with addresses from 10.244.0.0/16) and the controller under test. One watcher
//! per kind, as a DNS server or kube-proxy watches (`kubectl get --raw ...?watch=1` from the
//! collection's current resourceVersion, so only changes arrive), counts the bytes of watch
//! events it receives: the JSON lines, before TLS and HTTP/2 framing. Measured per change: a
//! pod's readiness flipped (NotReady, then Ready again: the mean of the two), and a pod
//! replaced (deleted, recreated by the StatefulSet controller, Ready again: every write that
//! takes). Written to `bench/out/watch-traffic-<version>.json` and printed.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::kubelet::{Kubelet, Readiness};
use crate::plane::{ControlPlane, repo};
use crate::support::Server;
use crate::{SLOW, field, wait};

/// Counts the bytes of one watch stream.
struct Watcher {
    child: Child,
    bytes: Arc<AtomicU64>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Watches `collection` (an API path) from its current resourceVersion.
    fn start(plane: &ControlPlane, collection: &str) -> Watcher {
        let list: Value =
            serde_json::from_str(&plane.kubectl(&["get", "--raw", collection])).expect("list json");
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .expect("list resourceVersion")
            .to_string();
        let mut child = Command::new(plane.dir.join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .args([
                "get",
                "--raw",
                &format!("{collection}?watch=1&resourceVersion={rv}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let mut out = child.stdout.take().expect("piped");
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Watcher {
            child,
            bytes,
            reader: Some(reader),
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The watches of one measurement, by name.
struct Watchers(Vec<(String, Watcher)>);

impl Watchers {
    fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|(_, w)| w.bytes()).collect()
    }

    /// Bytes each watcher received since `before`.
    fn since(&self, before: &[u64]) -> Value {
        let mut out = serde_json::Map::new();
        for ((name, w), b) in self.0.iter().zip(before) {
            out.insert(name.clone(), json!(w.bytes() - b));
        }
        Value::Object(out)
    }
}

/// The petdns binary under test and the API version its CRDs serve.
fn binary() -> (String, String) {
    let bin = std::env::var("PETDNS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_petdns").into());
    let out = Command::new(&bin).arg("crd").output().expect("petdns crd");
    let crds: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("CRD YAML");
    let version = crds[0]["spec"]["versions"][0]["name"]
        .as_str()
        .expect("version")
        .to_string();
    (bin, version)
}

const NS: &str = "traffic";

fn statefulset(replicas: u32) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"clusterIP": "None", "selector": {"app": "web"},
                  "ports": [{"name": "web", "port": 80, "targetPort": "web"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
         "spec": {
            "serviceName": "web", "replicas": replicas, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                  "ports": [{"name": "web", "containerPort": 8080}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
         }},
    ]})
    .to_string()
}

/// Waits until the StatefulSet has `ready` Ready replicas and the PeerSet says `ready/n`.
fn settle(plane: &ControlPlane, ready: u32, n: u32) {
    let deadline = SLOW * 20;
    wait(deadline, || {
        (field(plane, NS, "sts/web", "{.status.readyReplicas}") == ready.to_string()).then_some(())
    })
    .unwrap_or_else(|| panic!("the StatefulSet never had {ready} Ready replicas"));
    wait(deadline, || {
        (field(plane, NS, "peerset/web", "{.status.ready}") == format!("{ready}/{n}")).then_some(())
    })
    .unwrap_or_else(|| panic!("the PeerSet never said {ready}/{n}"));
    // Whatever else a change sets off (EndpointSlice, Endpoints) arrives within this.
    std::thread::sleep(Duration::from_secs(3));
}

fn measure(bin: &str, version: &str, n: u32) -> Value {
    let plane = ControlPlane::start(600);
    let kubelet = Kubelet::start(&plane, &["node-a", "node-b", "node-c"]);
    kubelet.use_pod_cidr();
    let crd = Command::new(bin).arg("crd").output().expect("petdns crd");
    plane.kubectl_stdin(&["apply", "-f", "-"], &String::from_utf8_lossy(&crd.stdout));
    plane.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd",
        "--all",
    ]);
    plane.kubectl(&["create", "namespace", "petdns"]);
    plane.kubectl(&["create", "namespace", NS]);
    let _controller = Server::spawn_with(
        bin,
        &[
            "controller",
            "--kubeconfig",
            plane.kubeconfig.to_str().expect("utf-8"),
            "--admin",
            "127.0.0.1:0",
            "--identity",
            "measure",
        ],
        true,
    );
    let started = std::time::Instant::now();
    plane.kubectl_stdin(&["apply", "-n", NS, "-f", "-"], &statefulset(n));
    wait(SLOW * 20, || {
        (field(&plane, NS, "sts/web", "{.status.readyReplicas}") == n.to_string()).then_some(())
    })
    .unwrap_or_else(|| panic!("the StatefulSet never had {n} Ready replicas"));
    let came_up = started.elapsed();
    // The PeerSet catches up; a controller of the v1alpha1 era says `PeerSetTooLarge` instead
    // when the set is over its size bound, and never writes it.
    let written = wait(SLOW * 20, || {
        if field(&plane, NS, "peerset/web", "{.status.ready}") == format!("{n}/{n}") {
            return Some(true);
        }
        let too_large = plane.kubectl_output(&[
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            "reason=PeerSetTooLarge",
            "-o",
            "name",
        ]);
        (!too_large.stdout.is_empty()).then_some(false)
    })
    .unwrap_or_else(|| panic!("the PeerSet never caught up with {n} Ready pods"));
    let caught_up = started.elapsed();
    if !written {
        return json!({"replicas": n, "version": version, "served": false,
                      "came_up_seconds": came_up.as_secs_f64()});
    }
    settle(&plane, n, n);

    let mut watches = vec![(
        "peersets".to_string(),
        format!("/apis/petdns.io/{version}/namespaces/{NS}/peersets"),
    )];
    if version != "v1alpha1" {
        watches.push((
            "peerslices".into(),
            format!("/apis/petdns.io/{version}/namespaces/{NS}/peerslices"),
        ));
    }
    watches.push((
        "endpointslices".into(),
        format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
    ));
    watches.push((
        "endpoints".into(),
        format!("/api/v1/namespaces/{NS}/endpoints"),
    ));
    let watchers = Watchers(
        watches
            .iter()
            .map(|(name, path)| (name.clone(), Watcher::start(&plane, path)))
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(2));

    let victim = format!("web-{}", n / 2);
    let before = watchers.snapshot();
    kubelet.set(NS, &victim, Readiness::NotReady);
    settle(&plane, n - 1, n);
    let not_ready = watchers.since(&before);
    let before = watchers.snapshot();
    kubelet.set(NS, &victim, Readiness::Ready);
    settle(&plane, n, n);
    let ready_again = watchers.since(&before);
    let before = watchers.snapshot();
    let uid = field(&plane, NS, &format!("pod/{victim}"), "{.metadata.uid}");
    plane.kubectl(&["delete", "pod", "-n", NS, &victim, "--wait=false"]);
    wait(SLOW, || {
        let now = field(&plane, NS, &format!("pod/{victim}"), "{.metadata.uid}");
        (!now.is_empty() && now != uid).then_some(())
    })
    .expect("the pod is replaced");
    settle(&plane, n, n);
    let replaced = watchers.since(&before);

    let mut flip = serde_json::Map::new();
    for (name, _) in &watches {
        let a = not_ready[name].as_u64().unwrap_or(0);
        let b = ready_again[name].as_u64().unwrap_or(0);
        flip.insert(name.clone(), json!((a + b) / 2));
    }
    let sizes = |what: &str| -> u64 {
        let out = plane.kubectl(&["get", what, "-n", NS, "-o", "json"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        v["items"]
            .as_array()
            .map(|items| items.iter().map(|i| i.to_string().len() as u64).sum())
            .unwrap_or(0)
    };
    let mut stored = serde_json::Map::new();
    for (name, _) in &watches {
        let resource = match name.as_str() {
            "peersets" | "peerslices" => format!("{name}.petdns.io"),
            other => other.to_string(),
        };
        stored.insert(name.clone(), json!(sizes(&resource)));
    }
    json!({
        "replicas": n,
        "version": version,
        "served": true,
        "came_up_seconds": came_up.as_secs_f64(),
        "peerset_caught_up_seconds": caught_up.as_secs_f64(),
        "readiness_flip_bytes": flip,
        "not_ready_bytes": not_ready,
        "ready_again_bytes": ready_again,
        "pod_replaced_bytes": replaced,
        "stored_bytes": stored,
    })
}

#[test]
#[ignore = "a measurement: brings up StatefulSets of up to 10,000 pods (see the module docs)"]
fn watch_traffic_per_change() {
    if !crate::plane::available() {
        return;
    }
    let (bin, version) = binary();
    let sizes: Vec<u32> = std::env::var("PETDNS_TRAFFIC_SIZES")
        .unwrap_or_else(|_| "3,100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    for n in sizes {
        let row = measure(&bin, &version, n);
        eprintln!("{row}");
        rows.push(row);
    }
    let out = repo().join("bench/out");
    std::fs::create_dir_all(&out).expect("bench/out");
    let label = std::env::var("PETDNS_TRAFFIC_LABEL").unwrap_or_else(|_| version.clone());
    let path = out.join(format!("watch-traffic-{label}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&rows).expect("json")).expect("write");
    eprintln!("written to {}", path.display());
}

/// The `a`-th address of 10.244.0.0/15, a pod CIDR as clusters have them.
fn pod_address(a: i32) -> String {
    format!("10.{}.{}.{}", 244 + a / 65_536, (a / 256) % 256, a % 256)
}

/// Memory of one DNS server replica (`serve --kube`) at 100,000 identities, on the real API
/// server: PeerSets and PeerSlices as the controller writes them (10 sets of 10,000 Ready
/// identities, 100 slices each, addresses from 10.244.0.0/15, a node, a revision and a claim
/// each), created directly so that no pod is needed; RSS one second after ready, minus RSS
/// serving one set of 30, over 100,000 (the method of docs/performance.md). Not in the
/// default run: `cargo test --test kubernetes -- --ignored --nocapture
/// serve_kube_memory`; written to `bench/out/kube-memory.json`.
#[test]
#[ignore = "a measurement: 100,000 identities in 1,000 PeerSlices"]
fn serve_kube_memory_per_identity() {
    if !crate::plane::available() {
        return;
    }
    let (bin, version) = binary();
    assert_eq!(version, "v1alpha2", "this measures PeerSlices");
    let plane = ControlPlane::start(600);
    let crd = Command::new(&bin).arg("crd").output().expect("petdns crd");
    plane.kubectl_stdin(&["apply", "-f", "-"], &String::from_utf8_lossy(&crd.stdout));
    plane.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd",
        "--all",
    ]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = plane.client(&rt);

    /// Writes set `set` in `ns` with `n` identities, as the controller would.
    async fn write_set(client: kube::Client, ns: String, set: String, n: i32, base: i32) {
        use kube::api::{Api, Patch, PatchParams};
        use petdns::identity::{
            Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PeerSet,
            PeerSlice, PortSpec, SrvPriority,
        };
        let identities = (0..n)
            .map(|o| {
                let a = base + o;
                Identity {
                    ordinal: o,
                    pod: format!("{set}-{o}"),
                    hostname: format!("{set}-{o}"),
                    addresses: vec![pod_address(a).parse().unwrap()],
                    state: IdentityState::Ready,
                    published: true,
                    node: Some(format!("node-{}", a % 50)),
                    revision: Some(format!("{set}-5d8f7c9b6d")),
                    claims: vec![format!("data-{set}-{o}")],
                }
            })
            .collect();
        let table = IdentityTable {
            namespace: ns.clone(),
            stateful_set: set.clone(),
            service: set.clone(),
            ordinals: Ordinals {
                start: 0,
                replicas: n,
            },
            pod_management_policy: "Parallel".into(),
            publish_not_ready_addresses: false,
            srv_priority: SrvPriority::Uniform,
            ports: vec![PortSpec {
                name: Some("web".into()),
                protocol: "TCP".into(),
                port: 8080,
            }],
            identities,
            conditions: vec![Condition {
                type_: "ServiceResolved".into(),
                status: ConditionStatus::True,
                reason: "ServiceResolved".into(),
                message: "ok".into(),
            }],
        };
        let objects = PeerSet::from_table(&table, Some(1), 100);
        let pp = PatchParams::apply("measure").force();
        let sets: Api<PeerSet> = Api::namespaced(client.clone(), &ns);
        let body = json!({"apiVersion": "petdns.io/v1alpha2", "kind": "PeerSet",
                          "metadata": {"name": set}, "spec": objects.spec});
        sets.patch(&set, &pp, &Patch::Apply(&body))
            .await
            .expect("PeerSet");
        let body = json!({"apiVersion": "petdns.io/v1alpha2", "kind": "PeerSet",
                          "status": objects.status});
        sets.patch_status(&set, &pp, &Patch::Apply(&body))
            .await
            .expect("status");
        let slices: Api<PeerSlice> = Api::namespaced(client, &ns);
        for (name, spec) in objects.slices {
            let body = json!({"apiVersion": "petdns.io/v1alpha2", "kind": "PeerSlice",
                "metadata": {"name": name, "labels": {"petdns.io/peer-set": set}}, "spec": spec});
            slices
                .patch(&name, &pp, &Patch::Apply(&body))
                .await
                .expect("PeerSlice");
        }
    }

    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let serve = |kubeconfig: &std::path::Path| {
        Server::spawn_with(
            &bin,
            &[
                "serve",
                "--kube",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            true,
        )
    };
    plane.kubectl(&["create", "namespace", "small"]);
    rt.block_on(write_set(
        client.clone(),
        "small".into(),
        "web".into(),
        30,
        0,
    ));
    let small = serve(&plane.kubeconfig);
    std::thread::sleep(Duration::from_secs(1));
    let small_rss = rss(small.pid());
    drop(small);

    let started = std::time::Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..10 {
            let ns = format!("big-{i}");
            plane.kubectl(&["create", "namespace", &ns]);
            tasks.push(tokio::spawn(write_set(
                client.clone(),
                ns,
                format!("set{i}"),
                10_000,
                30 + i * 10_000,
            )));
        }
        for t in tasks {
            t.await.expect("write");
        }
    });
    let written = started.elapsed();
    let started = std::time::Instant::now();
    let big = serve(&plane.kubeconfig);
    let ready = started.elapsed();
    let d = big.dig(&["A", "set7-9999.set7.big-7.svc.cluster.local"]);
    assert_eq!(d.answers("A"), [pod_address(30 + 79_999)], "{d}");
    std::thread::sleep(Duration::from_secs(1));
    let big_rss = rss(big.pid());
    let row = json!({
        "identities": 100_000,
        "slices": 1_000,
        "rss_bytes": big_rss,
        "rss_bytes_serving_30": small_rss,
        "bytes_per_identity": (big_rss.saturating_sub(small_rss)) / 100_000,
        "ready_seconds": ready.as_secs_f64(),
        "objects_written_seconds": written.as_secs_f64(),
    });
    eprintln!("{row}");
    let out = repo().join("bench/out");
    std::fs::create_dir_all(&out).expect("bench/out");
    std::fs::write(
        out.join("kube-memory.json"),
        serde_json::to_string_pretty(&row).unwrap(),
    )
    .expect("write");
}
