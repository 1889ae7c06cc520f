//! Cluster mode end to end: the real `petdns controller` and `petdns serve --kube` processes
//! against the fake API server, objects changed through a kube client (the test plays the
//! StatefulSet controller and the kubelet), answers checked with `dig`.
//!
//! Every wait is a poll with a deadline; the only fixed-length waits are the API server
//! outages themselves (10 s and 60 s).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::apiserver::FakeApiServer;
use crate::support::{DEADLINE, Dig, Server, dig, poll};

const NS: &str = "shop";
const PEERSETS: &str = "/apis/petdns.io/v1alpha2/namespaces/shop/peersets/";
const PEERSLICES: &str = "/apis/petdns.io/v1alpha2/namespaces/shop/peerslices/";

/// `<pod>.<svc>.shop.svc.cluster.local`
fn host(pod: &str, svc: &str) -> String {
    format!("{pod}.{svc}.{NS}.svc.cluster.local")
}

/// `<svc>.shop.svc.cluster.local`
fn service_name(svc: &str) -> String {
    format!("{svc}.{NS}.svc.cluster.local")
}

/// The fake API server, a kube client and a kubeconfig for the petdns processes.
struct Cluster {
    api: FakeApiServer,
    // The client's background task runs here while the test thread blocks on dig.
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let api = FakeApiServer::start();
        api.set_bookmark_interval(Duration::from_millis(200));
        let client = rt.block_on(async { api.client(NS) });
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, NS)
            .expect("write kubeconfig");
        Cluster {
            api,
            rt,
            client,
            kubeconfig,
            _dir: dir,
        }
    }

    fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().expect("utf-8 temp path")
    }

    /// `petdns serve --kube`, waiting for /readyz unless `wait_ready` is false.
    fn serve(&self, wait_ready: bool) -> Server {
        Server::spawn(
            &[
                "serve",
                "--kube",
                "--kubeconfig",
                self.kubeconfig(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            wait_ready,
        )
    }

    /// `petdns explain NAME --kube`: its output (stdout and stderr).
    fn explain(&self, name: &str) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_petdns"))
            .args(["explain", name, "--kube", "--kubeconfig", self.kubeconfig()])
            .output()
            .expect("run petdns explain");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `petdns controller` with a 3 s lease, ready once its watches listed.
    fn controller(&self, identity: &str) -> Server {
        Server::spawn(
            &[
                "controller",
                "--kubeconfig",
                self.kubeconfig(),
                "--admin",
                "127.0.0.1:0",
                "--lease-namespace",
                "petdns",
                "--identity",
                identity,
                "--lease-seconds",
                "3",
            ],
            true,
        )
    }

    // ----- objects, through the kube client ---------------------------------------

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn peersets(&self) -> Api<DynamicObject> {
        peer_api(&self.client, NS, "PeerSet")
    }

    fn peerslices(&self) -> Api<DynamicObject> {
        peer_api(&self.client, NS, "PeerSlice")
    }

    fn create<K>(&self, api: Api<K>, obj: Value) -> K
    where
        K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(obj).expect("a valid object");
        self.rt
            .block_on(api.create(&PostParams::default(), &obj))
            .expect("create")
    }

    fn merge<K>(&self, api: Api<K>, name: &str, patch: Value) -> K
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.rt
            .block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)))
            .unwrap_or_else(|e| panic!("patch {name}: {e}"))
    }

    fn merge_status<K>(&self, api: Api<K>, name: &str, status: Value) -> K
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.rt
            .block_on(api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            ))
            .unwrap_or_else(|e| panic!("patch status of {name}: {e}"))
    }

    fn delete<K>(&self, api: Api<K>, name: &str)
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.rt
            .block_on(api.delete(name, &DeleteParams::default()))
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    fn node(&self, name: &str) {
        self.create(
            self.nodes(),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
        );
        self.node_ready(name, true);
    }

    fn node_ready(&self, name: &str, ready: bool) {
        let status = if ready { "True" } else { "Unknown" };
        self.merge_status(
            self.nodes(),
            name,
            json!({"conditions": [{"type": "Ready", "status": status}]}),
        );
    }

    /// A Service selecting `app=<app>`, headless unless `cluster_ip` is given.
    fn service(&self, name: &str, app: &str, publish_not_ready: bool, cluster_ip: &str) {
        self.create(
            self.services(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "clusterIP": cluster_ip,
                    "selector": {"app": app},
                    "publishNotReadyAddresses": publish_not_ready,
                    "ports": [{"name": "web", "protocol": "TCP", "port": 80, "targetPort": "web"}],
                },
            }),
        );
    }

    /// A StatefulSet `name` governed by `service`, pods labelled `app=<name>`.
    fn statefulset(&self, name: &str, service: &str, replicas: i32, start: i32) {
        self.create(
            self.sets(),
            json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "serviceName": service,
                    "replicas": replicas,
                    "ordinals": {"start": start},
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{
                            "name": "app", "image": "registry.example/app:1",
                            "ports": [{"name": "web", "containerPort": 8080}],
                        }]},
                    },
                },
            }),
        );
    }

    fn scale(&self, name: &str, replicas: i32) {
        self.merge(self.sets(), name, json!({"spec": {"replicas": replicas}}));
    }

    /// What the StatefulSet controller creates: pod `<set>-<ordinal>`, no IP yet.
    fn pod(&self, set: &str, ordinal: i32, subdomain: &str, node: &str) {
        let name = format!("{set}-{ordinal}");
        self.create(
            self.pods(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": {
                    "app": set,
                    "statefulset.kubernetes.io/pod-name": name,
                    "apps.kubernetes.io/pod-index": ordinal.to_string(),
                    "controller-revision-hash": format!("{set}-6d8f5c"),
                }},
                "spec": {
                    "hostname": name, "subdomain": subdomain, "nodeName": node,
                    "containers": [{"name": "app", "image": "registry.example/app:1"}],
                },
            }),
        );
    }

    /// What the kubelet reports: an IP, the Ready condition and a container restart count.
    fn pod_status(&self, pod: &str, ip: &str, ready: bool, restarts: i32) {
        let ready = if ready { "True" } else { "False" };
        self.merge_status(
            self.pods(),
            pod,
            json!({
                "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [{
                    "name": "app", "image": "registry.example/app:1", "imageID": "",
                    "ready": ready == "True", "restartCount": restarts,
                }],
            }),
        );
    }

    /// A pod with an IP, Ready or not.
    fn running_pod(&self, set: &str, ordinal: i32, subdomain: &str, ip: &str, ready: bool) {
        self.pod(set, ordinal, subdomain, "node-a");
        self.pod_status(&format!("{set}-{ordinal}"), ip, ready, 0);
    }

    // ----- reading back -----------------------------------------------------------

    /// PeerSet `name` with the identities of all its slices, sorted by ordinal, under
    /// `identities` (a view for the tests: the objects keep them apart).
    fn peerset(&self, name: &str) -> Option<Value> {
        let mut ps = self.api.get("petdns.io/v1alpha2", "PeerSet", NS, name)?;
        let mut identities: Vec<Value> = self
            .slices_of(name)
            .iter()
            .flat_map(|s| {
                s["spec"]["identities"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        identities.sort_by_key(|i| i["ordinal"].as_i64());
        ps["identities"] = Value::Array(identities);
        Some(ps)
    }

    /// The PeerSlices labelled with PeerSet `name`, by name.
    fn slices_of(&self, name: &str) -> Vec<Value> {
        let mut slices: Vec<Value> = self
            .api
            .list("petdns.io/v1alpha2", "PeerSlice", Some(NS))
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["petdns.io/peer-set"] == name)
            .collect();
        slices.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string());
        slices
    }

    /// Waits until the PeerSet `name` satisfies `ok`; returns it.
    #[track_caller]
    fn wait_peerset(&self, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        poll(DEADLINE, || self.peerset(name).filter(|p| ok(p))).unwrap_or_else(|| {
            panic!(
                "PeerSet {name}: never {what}; it is {:#}",
                self.peerset(name).unwrap_or(Value::Null)
            )
        })
    }

    /// The Kubernetes Events (events.k8s.io/v1) with `reason` about object `regarding`.
    fn events(&self, reason: &str, regarding: &str) -> Vec<Value> {
        self.api
            .list("events.k8s.io/v1", "Event", Some(NS))
            .into_iter()
            .filter(|e| e["reason"] == reason && e["regarding"]["name"] == regarding)
            .collect()
    }
}

/// PeerSets or PeerSlices (`kind`) in namespace `ns`, untyped, so tests can write garbage.
fn peer_api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let plural = format!("{}s", kind.to_lowercase());
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("petdns.io", "v1alpha2", kind),
        &plural,
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn ready_of(ps: &Value) -> &str {
    ps["status"]["ready"].as_str().unwrap_or("")
}

fn identity<'a>(ps: &'a Value, pod: &str) -> &'a Value {
    ps["identities"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["pod"] == pod))
        .unwrap_or(&Value::Null)
}

fn condition<'a>(ps: &'a Value, type_: &str) -> &'a Value {
    ps["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Polls `dig <args>` until `ok`; returns that answer.
#[track_caller]
fn wait_dig(dns: &Server, args: &[&str], what: &str, ok: impl Fn(&Dig) -> bool) -> Dig {
    let mut last = Dig::default();
    poll(DEADLINE, || {
        last = dns.dig(args);
        ok(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("dig {args:?}: never {what}; last answer:\n{last}"))
}

fn is_a(expected: &[&str]) -> impl Fn(&Dig) -> bool + use<> {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    move |d: &Dig| d.status == "NOERROR" && d.answers("A") == want
}

fn is_nodata(d: &Dig) -> bool {
    d.status == "NOERROR" && d.answer.is_empty() && d.aa()
}

fn is_nxdomain(d: &Dig) -> bool {
    d.status == "NXDOMAIN" && d.answer.is_empty()
}

/// Queries a name over and over on a thread until stopped, keeping every answer.
struct DigLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Dig>>,
}

impl DigLoop {
    fn start(dns: SocketAddr, args: &[&str]) -> DigLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut seen = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                seen.push(dig(dns, &args));
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        DigLoop { stop, thread }
    }

    fn finish(self) -> Vec<Dig> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("dig loop")
    }
}

/// Asserts every reply seen was one of `allowed` addresses or NODATA (`nodata_ok`). A query
/// with no reply at all (lost on a loaded 2-core machine) is no wrong answer, but at most 10 %
/// may be lost.
#[track_caller]
fn assert_answers(seen: &[Dig], allowed: &[&str], nodata_ok: bool, what: &str) {
    let lost = seen.iter().filter(|d| d.status.is_empty()).count();
    let replies = seen.len() - lost;
    assert!(
        replies > 0 && lost * 10 <= replies,
        "{what}: {lost} of {} queries unanswered",
        seen.len()
    );
    for d in seen.iter().filter(|d| !d.status.is_empty()) {
        let ok = d.status == "NOERROR"
            && (d.answer.is_empty() && nodata_ok
                || !d.answer.is_empty()
                    && d.answers("A").iter().all(|a| allowed.contains(&a.as_str())));
        assert!(
            ok,
            "{what}: a wrong answer among {} samples:\n{d}",
            seen.len()
        );
    }
}

fn metric(server: &Server, series: &str) -> f64 {
    server.metric(series).unwrap_or(0.0)
}

fn leader_of<'a>(controllers: &'a [&'a Server]) -> Option<&'a Server> {
    let leaders: Vec<&Server> = controllers
        .iter()
        .copied()
        .filter(|c| c.metric("petdns_leader") == Some(1.0))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// `web`: governing Service `nginx`, pods `web-<n>` at 192.0.2.(10 + n) on node-a.
fn ip(ordinal: i32) -> String {
    format!("192.0.2.{}", 10 + ordinal)
}

#[test]
fn statefulset_scale_up_down_and_pod_replacement() {
    let c = Cluster::new();
    c.node("node-a");
    let _controller = c.controller("ctl-a");
    let dns = c.serve(true);
    let web = |n: i32| host(&format!("web-{n}"), "nginx");

    wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "NXDOMAIN before any StatefulSet",
        is_nxdomain,
    );
    c.service("nginx", "web", false, "None");
    c.statefulset("web", "nginx", 3, 0);
    c.wait_peerset("web", "0/3", |p| ready_of(p) == "0/3");
    // Declared names exist before any pod does.
    wait_dig(
        &dns,
        &["A", &web(0)],
        "NODATA for a declared ordinal",
        is_nodata,
    );
    wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "NODATA for the service",
        is_nodata,
    );

    let mut printed = String::new();
    for n in 0..3 {
        let pod = format!("web-{n}");
        c.pod("web", n, "nginx", "node-a");
        c.wait_peerset("web", "Pending", |p| {
            identity(p, &pod)["state"] == "Pending"
        });
        wait_dig(&dns, &["A", &web(n)], "NODATA while Pending", is_nodata);
        c.pod_status(&pod, &ip(n), false, 0);
        c.wait_peerset("web", "NotReady", |p| {
            identity(p, &pod)["state"] == "NotReady"
        });
        wait_dig(&dns, &["A", &web(n)], "NODATA while NotReady", is_nodata);
        c.pod_status(&pod, &ip(n), true, 0);
        let d = wait_dig(&dns, &["A", &web(n)], "the pod's address", is_a(&[&ip(n)]));
        printed.push_str(&d.raw);
    }
    let all: Vec<String> = (0..3).map(ip).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let d = wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "three addresses",
        is_a(&all),
    );
    printed.push_str(&d.raw);
    c.wait_peerset("web", "3/3", |p| ready_of(p) == "3/3");

    // Scale up to 5: the new ordinals are declared (NODATA), then answer once Ready.
    c.scale("web", 5);
    c.wait_peerset("web", "3/5", |p| ready_of(p) == "3/5");
    wait_dig(
        &dns,
        &["A", &web(4)],
        "NODATA for a new declared ordinal",
        is_nodata,
    );
    for n in 3..5 {
        c.running_pod("web", n, "nginx", &ip(n), true);
    }
    let all: Vec<String> = (0..5).map(ip).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let d = wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "five addresses",
        is_a(&all),
    );
    printed.push_str(&d.raw);
    let d = wait_dig(
        &dns,
        &["SRV", &format!("_web._tcp.{}", service_name("nginx"))],
        "five SRV targets",
        |d| d.answers("SRV").len() == 5,
    );
    printed.push_str(&d.raw);
    eprintln!("=== scale-up: dig output ===\n{printed}=== end of scale-up ===");

    // Scale down to 2: condemned pods keep answering until the StatefulSet controller
    // deletes them (highest first); then their names are gone.
    c.scale("web", 2);
    c.wait_peerset("web", "Condemned", |p| {
        identity(p, "web-4")["state"] == "Condemned" && ready_of(p).ends_with("/2")
    });
    for n in (2..5).rev() {
        c.delete(c.pods(), &format!("web-{n}"));
        wait_dig(
            &dns,
            &["A", &web(n)],
            "NXDOMAIN after scale-down",
            is_nxdomain,
        );
    }
    wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "two addresses",
        is_a(&[&ip(0), &ip(1)]),
    );
    c.wait_peerset("web", "2/2", |p| ready_of(p) == "2/2");

    // web-1 deleted and recreated with a new IP: the name stays, the address follows, and
    // no answer in between is NXDOMAIN.
    let new_ip = "198.51.100.11";
    let watch = DigLoop::start(dns.dns, &["A", &web(1)]);
    // Each intermediate state is also checked once it reached DNS (the PeerSet shows it and
    // the next snapshot is out); the loop above samples everything in between.
    let step = |state: &str| {
        c.wait_peerset("web", state, |p| identity(p, "web-1")["state"] == state);
        wait_dig(&dns, &["A", &web(1)], "NODATA", is_nodata);
    };
    c.delete(c.pods(), "web-1");
    step("Missing");
    c.pod("web", 1, "nginx", "node-a");
    step("Pending");
    c.pod_status("web-1", new_ip, false, 0);
    step("NotReady");
    c.pod_status("web-1", new_ip, true, 0);
    wait_dig(&dns, &["A", &web(1)], "the new address", is_a(&[new_ip]));
    let seen = watch.finish();
    assert_answers(
        &seen,
        &[&ip(1), new_ip],
        true,
        "web-1 during its replacement",
    );
    let nodata = seen.iter().filter(|d| d.answer.is_empty()).count();
    eprintln!(
        "pod replacement: {} answers sampled, {nodata} NODATA, none NXDOMAIN",
        seen.len()
    );
}

#[test]
fn publish_not_ready_start_ordinal_and_node_lost() {
    let c = Cluster::new();
    c.node("node-a");
    c.node("node-b");
    let _controller = c.controller("ctl-a");
    let dns = c.serve(true);
    let db = |n: i32| host(&format!("db-{n}"), "db");

    // Ordinals start at 5; the Service publishes not-ready addresses.
    c.service("db", "db", true, "None");
    c.statefulset("db", "db", 2, 5);
    c.pod("db", 5, "db", "node-a");
    c.pod_status("db-5", "192.0.2.55", false, 0);
    c.pod("db", 6, "db", "node-b");
    c.pod_status("db-6", "192.0.2.56", false, 0);
    let ps = c.wait_peerset("db", "2/2 published while NotReady", |p| {
        ready_of(p) == "2/2"
    });
    assert_eq!(
        ps["spec"]["ordinals"],
        json!({"start": 5, "replicas": 2}),
        "{ps:#}"
    );
    assert_eq!(ps["spec"]["publishNotReadyAddresses"], true, "{ps:#}");
    assert_eq!(identity(&ps, "db-5")["state"], "NotReady", "{ps:#}");
    wait_dig(
        &dns,
        &["A", &db(5)],
        "a NotReady address",
        is_a(&["192.0.2.55"]),
    );
    wait_dig(
        &dns,
        &["A", &db(6)],
        "a NotReady address",
        is_a(&["192.0.2.56"]),
    );
    for n in [0, 4, 7] {
        wait_dig(&dns, &["A", &db(n)], "NXDOMAIN outside [5, 7)", is_nxdomain);
    }

    // publishNotReadyAddresses off: the NotReady pods leave DNS, their names stay.
    c.merge(
        c.services(),
        "db",
        json!({"spec": {"publishNotReadyAddresses": false}}),
    );
    c.wait_peerset("db", "0/2", |p| ready_of(p) == "0/2");
    wait_dig(&dns, &["A", &db(5)], "NODATA", is_nodata);
    c.pod_status("db-5", "192.0.2.55", true, 0);
    c.pod_status("db-6", "192.0.2.56", true, 0);
    wait_dig(
        &dns,
        &["A", &db(6)],
        "the Ready address",
        is_a(&["192.0.2.56"]),
    );

    // node-b goes NotReady: db-6 shows NodeLost but keeps its record while its own Ready
    // condition is still True; when the node lifecycle controller flips it, it goes.
    c.node_ready("node-b", false);
    let ps = c.wait_peerset("db", "db-6 NodeLost", |p| {
        identity(p, "db-6")["state"] == "NodeLost"
    });
    assert_eq!(identity(&ps, "db-6")["published"], true, "{ps:#}");
    assert_eq!(identity(&ps, "db-5")["state"], "Ready", "{ps:#}");
    wait_dig(
        &dns,
        &["A", &db(6)],
        "the address while Ready",
        is_a(&["192.0.2.56"]),
    );
    c.pod_status("db-6", "192.0.2.56", false, 0);
    let ps = c.wait_peerset("db", "db-6 unpublished", |p| {
        identity(p, "db-6")["published"] == false
    });
    assert_eq!(identity(&ps, "db-6")["state"], "NodeLost", "{ps:#}");
    wait_dig(&dns, &["A", &db(6)], "NODATA", is_nodata);
    wait_dig(
        &dns,
        &["A", &service_name("db")],
        "only db-5",
        is_a(&["192.0.2.55"]),
    );
    c.node_ready("node-b", true);
    c.wait_peerset("db", "db-6 NotReady", |p| {
        identity(p, "db-6")["state"] == "NotReady"
    });
}

/// A StatefulSet of 10,000 replicas (the declared bound) is served live through 100 slices of
/// 100; one pod's change rewrites the one slice of its block; scaled to 3 and back, exactly the
/// slices the blocks need are left.
#[test]
fn ten_thousand_replicas_are_served_through_a_hundred_slices() {
    let c = Cluster::new();
    c.node("node-a");
    let controller = c.controller("ctl-a");
    let dns = c.serve(true);
    c.service("nginx", "web", false, "None");
    c.statefulset("web", "nginx", 10_000, 0);
    let slice_names = |n: usize| -> Vec<String> { (0..n).map(|k| format!("web.{k}")).collect() };
    let names = || -> Vec<String> {
        let mut v: Vec<String> = c
            .slices_of("web")
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort_by_key(|n| n.trim_start_matches("web.").parse::<i32>().unwrap_or(-1));
        v
    };
    let ps = c.wait_peerset("web", "100 slices", |p| {
        p["status"]["slices"] == 100 && ready_of(p) == "0/10000"
    });
    assert_eq!(ps["identities"].as_array().map(Vec::len), Some(10_000));
    assert_eq!(names(), slice_names(100));
    let slice = &c.slices_of("web")[0];
    assert_eq!(slice["spec"]["block"], 0);
    assert_eq!(slice["spec"]["ready"], "0/100");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "PeerSet");

    // The last ordinal is declared (NODATA), one past it does not exist.
    wait_dig(
        &dns,
        &["A", &host("web-9999", "nginx")],
        "NODATA",
        is_nodata,
    );
    wait_dig(
        &dns,
        &["A", &host("web-10000", "nginx")],
        "NXDOMAIN",
        is_nxdomain,
    );

    // One pod's change: one slice written (and the PeerSet's status, for its count).
    let slice_writes = |name: &str| c.api.count_writes_to(&format!("{PEERSLICES}{name}"));
    let before: Vec<usize> = slice_names(100).iter().map(|n| slice_writes(n)).collect();
    c.running_pod("web", 4321, "nginx", "192.0.2.43", true);
    wait_dig(
        &dns,
        &["A", &host("web-4321", "nginx")],
        "the pod",
        is_a(&["192.0.2.43"]),
    );
    let after: Vec<usize> = slice_names(100).iter().map(|n| slice_writes(n)).collect();
    let changed: Vec<String> = slice_names(100)
        .into_iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        changed,
        ["web.43"],
        "only the slice of ordinal 4321's block is written"
    );

    // Down to 3 (the pod of 4321 gone, as the StatefulSet controller would remove it): one
    // slice left. Back to 10,000: 100 again.
    c.delete(c.pods(), "web-4321");
    c.scale("web", 3);
    c.wait_peerset("web", "1 slice", |p| p["status"]["slices"] == 1);
    poll(DEADLINE, || (names() == slice_names(1)).then_some(()))
        .unwrap_or_else(|| panic!("slices after the scale-down: {:?}", names()));
    wait_dig(
        &dns,
        &["A", &host("web-3", "nginx")],
        "NXDOMAIN",
        is_nxdomain,
    );
    c.scale("web", 10_000);
    c.wait_peerset("web", "100 slices", |p| p["status"]["slices"] == 100);
    poll(DEADLINE, || (names() == slice_names(100)).then_some(()))
        .unwrap_or_else(|| panic!("slices after the scale-up: {:?}", names().len()));
    wait_dig(
        &dns,
        &["A", &host("web-9999", "nginx")],
        "NODATA",
        is_nodata,
    );
    assert!(
        controller
            .metric("petdns_peerslice_writes_total")
            .unwrap_or(0.0)
            >= 201.0
    );
}

#[test]
fn misconfigurations_set_conditions_events_and_no_records() {
    let c = Cluster::new();
    c.node("node-a");
    let _controller = c.controller("ctl-a");
    let dns = c.serve(true);

    // (set, service, reason); each set has one Ready pod.
    c.statefulset("orphan", "missing", 1, 0);
    c.service("clustered", "clustered", false, "10.96.0.10");
    c.statefulset("clustered", "clustered", 1, 0);
    c.service("picky", "someone-else", false, "None");
    c.statefulset("picky", "picky", 1, 0);
    c.service("stray", "stray", false, "None");
    c.statefulset("stray", "stray", 1, 0);
    c.running_pod("orphan", 0, "missing", "192.0.2.20", true);
    c.running_pod("clustered", 0, "clustered", "192.0.2.21", true);
    c.running_pod("picky", 0, "picky", "192.0.2.22", true);
    c.running_pod("stray", 0, "elsewhere", "192.0.2.23", true);

    let cases = [
        ("orphan", "missing", "ServiceResolved", "ServiceNotFound"),
        (
            "clustered",
            "clustered",
            "ServiceResolved",
            "ServiceNotHeadless",
        ),
        ("picky", "picky", "ServiceResolved", "SelectorMismatch"),
        ("stray", "stray", "SubdomainsMatch", "SubdomainMismatch"),
    ];
    for (set, svc, type_, reason) in cases {
        let ps = c.wait_peerset(set, reason, |p| condition(p, type_)["reason"] == reason);
        assert_eq!(condition(&ps, type_)["status"], "False", "{ps:#}");
        assert_eq!(ready_of(&ps), "0/1", "{ps:#}");
        assert!(
            !condition(&ps, type_)["message"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{ps:#}"
        );
        poll(DEADLINE, || {
            (!c.events(reason, set).is_empty()).then_some(())
        })
        .unwrap_or_else(|| panic!("no Kubernetes Event {reason} about StatefulSet {set}"));
        let pod = host(&format!("{set}-0"), svc);
        if reason == "SubdomainMismatch" {
            // The Service is fine, so the declared name exists, but nothing is published.
            wait_dig(&dns, &["A", &pod], "NODATA", is_nodata);
            wait_dig(&dns, &["A", &service_name(svc)], "NODATA", is_nodata);
        } else {
            wait_dig(&dns, &["A", &pod], "NXDOMAIN", is_nxdomain);
            wait_dig(&dns, &["A", &service_name(svc)], "NXDOMAIN", is_nxdomain);
        }
    }
    let events = c.events("ServiceNotFound", "orphan");
    assert_eq!(events[0]["type"], "Warning", "{:#}", events[0]);

    // `petdns explain --kube` gives the same reasons, live from the PeerSets.
    for (pod, reason) in [
        ("picky-0.picky", "SelectorMismatch"),
        ("clustered-0.clustered", "ServiceNotHeadless"),
    ] {
        let out = c.explain(&format!("{pod}.{NS}"));
        assert!(out.contains(reason) && out.contains("NXDOMAIN"), "{out}");
    }
    let out = c.explain(&format!("stray-0.stray.{NS}"));
    assert!(
        out.contains("NODATA") && out.contains("SubdomainMismatch"),
        "{out}"
    );

    // Fixing the misconfiguration clears the condition and publishes the pod.
    c.service("missing", "orphan", false, "None");
    c.wait_peerset("orphan", "resolved", |p| {
        condition(p, "ServiceResolved")["status"] == "True" && ready_of(p) == "1/1"
    });
    wait_dig(
        &dns,
        &["A", &host("orphan-0", "missing")],
        "the address",
        is_a(&["192.0.2.20"]),
    );
    let out = c.explain(&format!("orphan-0.missing.{NS}"));
    assert!(out.contains("answers 192.0.2.20 (Ready)"), "{out}");
}

#[test]
fn restart_count_change_writes_no_peerset_and_crd_columns() {
    let c = Cluster::new();
    c.node("node-a");
    let _controller = c.controller("ctl-a");
    let dns = c.serve(true);
    c.service("nginx", "web", false, "None");
    c.statefulset("web", "nginx", 2, 0);
    c.running_pod("web", 0, "nginx", &ip(0), true);
    c.running_pod("web", 1, "nginx", &ip(1), false);
    let ps = c.wait_peerset("web", "1/2", |p| {
        ready_of(p) == "1/2" && identity(p, "web-1")["state"] == "NotReady"
    });
    // status.ready reads published/declared.
    assert_eq!(ps["identities"].as_array().map(Vec::len), Some(2), "{ps:#}");
    wait_dig(
        &dns,
        &["A", &host("web-0", "nginx")],
        "web-0",
        is_a(&[&ip(0)]),
    );

    // A second set is the marker: once its PeerSet shows a change made after the restart,
    // the controller has handled the restart event too (one watch loop, in order).
    c.service("other", "marker", false, "None");
    c.statefulset("marker", "other", 1, 0);
    c.wait_peerset("marker", "0/1", |p| ready_of(p) == "0/1");
    let web_path = format!("{PEERSETS}web");
    let slice_path = format!("{PEERSLICES}web.0");
    let before = c.api.count_writes(&web_path);
    let slice_before = c.api.count_writes_to(&slice_path);
    assert!(slice_before > 0, "web.0 was written");
    c.pod_status("web-0", &ip(0), true, 1);
    c.pod_status("web-0", &ip(0), true, 2);
    c.running_pod("marker", 0, "other", "192.0.2.40", true);
    c.wait_peerset("marker", "1/1", |p| ready_of(p) == "1/1");
    assert_eq!(
        c.api.count_writes(&web_path),
        before,
        "a container restart is not DNS-relevant and must not write the PeerSet"
    );
    assert_eq!(
        c.api.count_writes_to(&slice_path),
        slice_before,
        "nor its slice"
    );
    // A DNS-relevant change to the same pod still writes.
    c.pod_status("web-1", &ip(1), true, 0);
    c.wait_peerset("web", "2/2", |p| ready_of(p) == "2/2");
    assert!(c.api.count_writes(&web_path) > before);

    // The CRD's printer columns: SERVICE, READY (published/declared), AGE.
    let out = std::process::Command::new(crate::support::BIN)
        .arg("crd")
        .output()
        .expect("run petdns crd");
    assert!(out.status.success());
    let crds: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("CRD YAML");
    let columns = |crd: &Value| -> Vec<(String, String)> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["jsonPath"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(crds.len(), 2, "PeerSet and PeerSlice");
    assert_eq!(
        columns(&crds[0]),
        own(&[
            ("SERVICE", ".spec.service"),
            ("READY", ".status.ready"),
            ("SLICES", ".status.slices"),
            ("AGE", ".metadata.creationTimestamp"),
        ]),
        "{:#}",
        crds[0]
    );
    assert_eq!(
        columns(&crds[1]),
        own(&[
            ("PEERSET", ".spec.peerSet"),
            ("BLOCK", ".spec.block"),
            ("READY", ".spec.ready"),
            ("AGE", ".metadata.creationTimestamp"),
        ]),
        "{:#}",
        crds[1]
    );
}

#[test]
fn leader_failover() {
    let c = Cluster::new();
    c.node("node-a");
    let first = c.controller("ctl-a");
    let second = c.controller("ctl-b");
    let dns = c.serve(true);
    let leader = poll(DEADLINE, || leader_of(&[&first, &second]).map(|l| l.pid()))
        .expect("exactly one controller leads");
    let (active, standby) = if first.pid() == leader {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(standby.metric("petdns_leader"), Some(0.0));

    c.service("nginx", "web", false, "None");
    c.statefulset("web", "nginx", 2, 0);
    c.running_pod("web", 0, "nginx", &ip(0), true);
    c.running_pod("web", 1, "nginx", &ip(1), true);
    let before = wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "two addresses",
        is_a(&[&ip(0), &ip(1)]),
    );
    let writes_before = c.api.count_writes(PEERSETS);

    // kill -9 the leader: no lease release, the standby waits out the 3 s lease.
    let watch = DigLoop::start(dns.dns, &["A", &service_name("nginx")]);
    let killed = Instant::now();
    active.kill();
    // A change while nobody leads.
    c.scale("web", 3);
    c.running_pod("web", 2, "nginx", &ip(2), true);
    poll(Duration::from_secs(15), || {
        (standby.metric("petdns_leader") == Some(1.0)).then_some(())
    })
    .expect("the standby takes over");
    let took_over = killed.elapsed();
    let after = wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "three addresses from the new leader",
        is_a(&[&ip(0), &ip(1), &ip(2)]),
    );
    let answered = killed.elapsed();
    let seen = watch.finish();
    assert_answers(
        &seen,
        &[&ip(0), &ip(1), &ip(2)],
        false,
        "nginx during failover",
    );
    assert!(
        seen.iter()
            .all(|d| d.status.is_empty() || d.answers("A").len() >= 2),
        "an answer lost an address during failover"
    );
    assert!(c.api.count_writes(PEERSETS) > writes_before);
    assert!(metric(&standby, "petdns_peerset_writes_total") >= 1.0);

    // Later changes are applied by the new leader too.
    c.pod_status("web-0", &ip(0), false, 0);
    let later = wait_dig(
        &dns,
        &["A", &service_name("nginx")],
        "web-0 gone",
        is_a(&[&ip(1), &ip(2)]),
    );
    eprintln!(
        "=== failover: dig output ===\nbefore (ctl leader pid {leader}):\n{}after kill -9, \
         standby leader after {took_over:.2?}, change answered after {answered:.2?}:\n{}\
         a later change by the new leader:\n{}{} answers sampled during failover, all correct\n\
         === end of failover ===",
        before.raw,
        after.raw,
        later.raw,
        seen.len()
    );
}

/// Waits for `petdns_kube_watches_healthy` to read `want`.
#[track_caller]
fn healthy(s: &Server, want: f64, who: &str) {
    poll(DEADLINE, || {
        (s.metric("petdns_kube_watches_healthy") == Some(want)).then_some(())
    })
    .unwrap_or_else(|| panic!("{who}: petdns_kube_watches_healthy never {want}"));
}

/// Measures from `since` until `dig A <name>` answers `want`.
fn time_to_answer(dns: &Server, name: &str, want: &str, since: Instant) -> Duration {
    wait_dig(dns, &["A", name], "the changed address", is_a(&[want]));
    since.elapsed()
}

/// How the API server goes away in an outage.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Reachable but answering nothing: new requests are held (`pause`) and open watches
    /// dropped, as behind a network black hole or with a hung API server. A change requested
    /// meanwhile waits in the server and lands on recovery.
    Hung,
    /// The process is gone, then restarts: connections refused and open ones cut
    /// (`go_down`), and the restarted server's watch history starts afresh (`compact`), so
    /// re-watching from the last resourceVersion gets 410 Gone and the watchers relist. A
    /// change made meanwhile (in the store, as another API server replica would take it) is
    /// there when it comes back.
    Down,
    /// Every request answered 503 Service Unavailable, in plain text, and open watches cut
    /// (`unavailable`), as by a load balancer with no healthy API server behind it; the
    /// history is kept, so on recovery the watchers resume from their resourceVersion and
    /// get the change made meanwhile (in the store, as in `Down`) as an event.
    ServiceUnavailable,
}

impl Outage {
    /// How soon after recovery the change made during the outage must be answered: the goal
    /// is about a second. Each watcher involved (the controller's on pods, serve's on
    /// PeerSets, side by side) first waits out the rest of its retry delay, at most 1 s once
    /// an outage has lasted (`WatchBackoff`); a hung server's held requests complete at once
    /// instead. After a restart the first retry meets 410 Gone and relists at once
    /// (`with_backoff`). The margin over a second is for a loaded 2-core machine.
    fn resync_bound(self) -> Duration {
        Duration::from_secs(2)
    }
}

/// The `petdns_kube_*` staleness metrics of one process at one moment.
#[derive(Clone, Copy, Debug)]
struct Staleness {
    /// `petdns_kube_watches_healthy`
    healthy: f64,
    /// `petdns_kube_watch_errors_total`
    errors: f64,
    /// Seconds since `petdns_kube_last_event_timestamp_seconds`.
    event_age: f64,
}

impl Staleness {
    fn of(s: &Server) -> Staleness {
        let text = s.metrics();
        let get = |series| crate::support::metric(&text, series).unwrap_or(f64::NAN);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        Staleness {
            healthy: get("petdns_kube_watches_healthy"),
            errors: get("petdns_kube_watch_errors_total"),
            event_age: now - get("petdns_kube_last_event_timestamp_seconds"),
        }
    }
}

/// A cluster under API faults: the StatefulSet `web` (web-0 and web-1 Ready) answered by a
/// real controller and `petdns serve --kube`, with dig loops from start to finish on web-0,
/// which never changes, and on web-1, which each fault moves to a new address.
struct FaultRig {
    c: Cluster,
    controller: Server,
    dns: Server,
    web1: String,
    steady: DigLoop,
    moving: DigLoop,
    /// Every address web-1 has had, the current one last.
    web1_addresses: Vec<String>,
    /// For each fault, how long after recovery its change was answered, and the bound.
    resync: Vec<(String, Duration, Duration)>,
}

impl FaultRig {
    fn new() -> FaultRig {
        let c = Cluster::new();
        c.node("node-a");
        let controller = c.controller("ctl-a");
        let dns = c.serve(true);
        c.service("nginx", "web", false, "None");
        c.statefulset("web", "nginx", 2, 0);
        c.running_pod("web", 0, "nginx", &ip(0), true);
        c.running_pod("web", 1, "nginx", &ip(1), true);
        let web0 = host("web-0", "nginx");
        let web1 = host("web-1", "nginx");
        wait_dig(&dns, &["A", &web0], "web-0", is_a(&[&ip(0)]));
        wait_dig(&dns, &["A", &web1], "web-1", is_a(&[&ip(1)]));
        let steady = DigLoop::start(dns.dns, &["A", &web0]);
        let moving = DigLoop::start(dns.dns, &["A", &web1]);
        FaultRig {
            c,
            controller,
            dns,
            web1,
            steady,
            moving,
            web1_addresses: vec![ip(1)],
            resync: Vec::new(),
        }
    }

    fn errors(s: &Server) -> f64 {
        metric(s, "petdns_kube_watch_errors_total")
    }

    /// web-1 has been moved to `address`: waits for that answer and records how long after
    /// `recovered` it came, to be checked against `bound`.
    fn resynced(&mut self, what: &str, address: &str, recovered: Instant, bound: Duration) {
        self.web1_addresses.push(address.to_string());
        let took = time_to_answer(&self.dns, &self.web1, address, recovered);
        self.resync.push((what.to_string(), took, bound));
    }

    /// The API server goes away for `length` as `kind` says while web-1 moves to `address`.
    /// Queried throughout, every reply is web-1's last address (a query lost on this loaded
    /// 2-core machine is no wrong answer, but at most 10 % may be lost); serve stays ready;
    /// both processes' metrics show the staleness; the change is answered after recovery.
    fn outage(&mut self, kind: Outage, length: Duration, address: &str) {
        let what = format!("{kind:?} for {length:?}");
        let last = self.web1_addresses.last().cloned().expect("an address");
        let errors_before = (Self::errors(&self.dns), Self::errors(&self.controller));
        let pending = match kind {
            Outage::Hung => {
                self.c.api.outage();
                let pods = self.c.pods();
                let status = json!({"status": {
                    "podIP": address, "podIPs": [{"ip": address}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }});
                Some(self.c.rt.spawn(async move {
                    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(status))
                        .await
                }))
            }
            Outage::Down | Outage::ServiceUnavailable => {
                if let Outage::Down = kind {
                    self.c.api.go_down();
                } else {
                    self.c.api.unavailable();
                }
                self.c
                    .api
                    .modify("v1", "Pod", NS, "web-1", |p| {
                        p["status"]["podIP"] = json!(address);
                        p["status"]["podIPs"] = json!([{ "ip": address }]);
                    })
                    .expect("web-1 exists");
                if let Outage::Down = kind {
                    self.c.api.compact();
                }
                None
            }
        };

        let started = Instant::now();
        let (mut answered, mut no_reply) = (0, 0);
        // (time into the outage, serve's metrics, the controller's), about once a second.
        let mut samples: Vec<(Duration, Staleness, Staleness)> = Vec::new();
        while started.elapsed() < length {
            let d = self.dns.dig(&["A", &self.web1]);
            if d.status.is_empty() {
                no_reply += 1;
            } else {
                answered += 1;
                assert!(
                    is_a(&[&last])(&d),
                    "{what}, {:.1?} in:\n{d}",
                    started.elapsed()
                );
            }
            let at = started.elapsed();
            if samples.last().map_or(Duration::ZERO, |s| s.0) + Duration::from_secs(1) <= at {
                samples.push((
                    at,
                    Staleness::of(&self.dns),
                    Staleness::of(&self.controller),
                ));
                let ready = self.dns.get("/readyz");
                assert!(
                    matches!(ready, Ok((200, _))),
                    "{what}: serve not ready {at:.1?} in: {ready:?}"
                );
            }
        }
        assert!(
            no_reply * 10 <= answered,
            "{what}: {no_reply} queries unanswered, {answered} answered"
        );

        // The staleness is visible in /metrics.
        let (_, dns_end, ctl_end) = *samples.last().expect("sampled");
        match kind {
            Outage::Down | Outage::ServiceUnavailable => {
                // Every request fails at once: from the first seconds to the end the watches
                // are unhealthy and their errors keep being counted. (With 503s that takes a
                // client that does not retry them itself, see `k8s::kube_client`.)
                for (at, dns, ctl) in samples.iter().filter(|s| s.0 >= Duration::from_secs(3)) {
                    assert_eq!(dns.healthy, 0.0, "{what}: serve {at:.1?} in: {dns:?}");
                    assert_eq!(ctl.healthy, 0.0, "{what}: controller {at:.1?} in: {ctl:?}");
                }
                let (_, dns_mid, ctl_mid) = samples[samples.len() / 2];
                for (who, before, mid, end) in [
                    ("serve", errors_before.0, dns_mid, dns_end),
                    ("controller", errors_before.1, ctl_mid, ctl_end),
                ] {
                    assert!(
                        before < mid.errors && mid.errors < end.errors,
                        "{what}: {who}'s watch errors not counted throughout: \
                         {before} -> {mid:?} -> {end:?}"
                    );
                }
            }
            Outage::Hung => {
                // Requests are held, not failed, so there is no error to count: the silence
                // shows as the time since the last event.
                for (who, end) in [("serve", dns_end), ("controller", ctl_end)] {
                    assert!(
                        end.event_age >= length.as_secs_f64() / 2.0,
                        "{what}: {who} shows no staleness at the end: {end:?}"
                    );
                }
            }
        }

        match kind {
            Outage::Hung => self.c.api.resume(),
            Outage::Down => self.c.api.come_up(),
            Outage::ServiceUnavailable => self.c.api.heal(),
        }
        let recovered = Instant::now();
        if let Some(pending) = pending {
            self.c
                .rt
                .block_on(pending)
                .expect("join")
                .expect("the change made during the outage");
        }
        self.resynced(&what, address, recovered, kind.resync_bound());
        eprintln!(
            "{what}: {answered} replies, all {last}, {no_reply} unanswered; watch errors \
             counted: serve {} -> {}, controller {} -> {}; metrics at the end: serve \
             {dns_end:?}, controller {ctl_end:?}",
            errors_before.0, dns_end.errors, errors_before.1, ctl_end.errors
        );
    }

    /// Both processes are healthy again, and every answer the dig loops got was right; prints
    /// and checks the resync times.
    fn finish(self) {
        healthy(&self.dns, 1.0, "serve after the faults");
        healthy(&self.controller, 1.0, "the controller after the faults");
        let steady = self.steady.finish();
        let moving = self.moving.finish();
        let web0 = ip(0);
        let web1: Vec<&str> = self.web1_addresses.iter().map(String::as_str).collect();
        assert_answers(&steady, &[&web0], false, "web-0 through every fault");
        assert_answers(&moving, &web1, false, "web-1 through every fault");
        assert!(
            steady.iter().chain(&moving).all(|d| d.status != "SERVFAIL"),
            "SERVFAIL after the initial load"
        );
        eprintln!(
            "resync after API faults ({} + {} queries, every reply correct):",
            steady.len(),
            moving.len()
        );
        for (what, took, _) in &self.resync {
            eprintln!(
                "  {what}: change answered {:.0} ms after recovery",
                took.as_secs_f64() * 1000.0
            );
        }
        for (what, took, bound) in self.resync {
            assert!(took < bound, "{what}: resync took {took:?}, over {bound:?}");
        }
    }
}

#[test]
fn api_faults_keep_the_last_answers_and_resync() {
    let mut f = FaultRig::new();
    let errors = FaultRig::errors;

    // 1. Watches dropped: the watchers re-watch from their resourceVersion.
    f.c.api.drop_watches();
    let t = Instant::now();
    f.c.pod_status("web-1", "198.51.100.1", true, 0);
    f.resynced("watches dropped", "198.51.100.1", t, Duration::from_secs(2));

    // 2. HTTP 500 for every request for 3 s, watches dropped so they must restart.
    let (dns_errors, ctl_errors) = (errors(&f.dns), errors(&f.controller));
    f.c.api.fail_for(Duration::from_secs(3));
    f.c.api.drop_watches();
    poll(DEADLINE, || (errors(&f.dns) > dns_errors).then_some(()))
        .expect("serve counts watch errors during 500s");
    poll(DEADLINE, || {
        (errors(&f.controller) > ctl_errors).then_some(())
    })
    .expect("the controller counts watch errors during 500s");
    healthy(&f.dns, 0.0, "serve during the 500s");
    healthy(&f.controller, 0.0, "the controller during the 500s");
    let healed = poll(DEADLINE, || {
        f.c.rt
            .block_on(f.c.pods().get("web-1"))
            .ok()
            .map(|_| Instant::now())
    })
    .expect("the API server answers again");
    f.c.pod_status("web-1", "198.51.100.2", true, 0);
    f.resynced(
        "500s for 3 s",
        "198.51.100.2",
        healed,
        Duration::from_secs(2),
    );
    // serve's one watch delivered the change: healthy again. (The controller's quiet watches
    // give no sign of having reconnected until their next event; checked after the relist.)
    healthy(&f.dns, 1.0, "serve after the 500s");

    // 3. Every request answered 503 for 10 s, as by a load balancer with no API server
    // behind it. (The controller's quiet watches have shown unhealthy since the 500s, see
    // operations.md; its error count must rise, and serve's gauge drop again.)
    f.outage(
        Outage::ServiceUnavailable,
        Duration::from_secs(10),
        "198.51.100.6",
    );

    // 4. 410 Gone: while the watches are down, the object changes and the history is
    // compacted, so re-watching from the last resourceVersion gets 410 and the watchers
    // relist. (The server holds requests meanwhile, so the change goes in through the test
    // hook; bookmarks keep a connected watcher's resourceVersion current, so compacting
    // alone would not expire it.)
    let (dns_errors, ctl_errors) = (errors(&f.dns), errors(&f.controller));
    f.c.api.outage();
    f.c.api
        .modify("v1", "Pod", NS, "web-1", |p| {
            p["status"]["podIP"] = json!("198.51.100.3");
            p["status"]["podIPs"] = json!([{"ip": "198.51.100.3"}]);
        })
        .expect("web-1 exists");
    f.c.api.compact();
    let t = Instant::now();
    f.c.api.resume();
    f.resynced("410 Gone", "198.51.100.3", t, Duration::from_secs(2));
    poll(DEADLINE, || (errors(&f.dns) > dns_errors).then_some(()))
        .expect("serve counts the 410 as a watch error");
    poll(DEADLINE, || {
        (errors(&f.controller) > ctl_errors).then_some(())
    })
    .expect("the controller counts the 410 as a watch error");

    // 5. The API server hangs for 10 s.
    f.outage(Outage::Hung, Duration::from_secs(10), "198.51.100.4");
    f.finish();
}

/// The API server process is gone for a minute, then restarts with a fresh watch history
/// (Reliability issue: "a 60 s outage"). Runs alongside the other tests; a minute of wall time.
#[test]
fn api_server_down_for_60_s_keeps_the_last_answers_and_resyncs() {
    let mut f = FaultRig::new();
    f.outage(Outage::Down, Duration::from_secs(60), "198.51.100.5");
    f.finish();
}

/// The spec of PeerSet `web` (Service `nginx`, one port) with `replicas` from 0.
fn peerset_spec(replicas: i32) -> Value {
    json!({
        "statefulSet": "web", "service": "nginx", "ordinals": {"start": 0, "replicas": replicas},
        "podManagementPolicy": "OrderedReady", "publishNotReadyAddresses": false,
        "ports": [{"name": "web", "protocol": "TCP", "port": 8080}], "sliceSize": 100,
    })
}

/// A PeerSet status as the controller would write it: the Service resolved.
fn peerset_status(ready: &str, slices: i32) -> Value {
    json!({
        "observedGeneration": 1, "ready": ready, "slices": slices,
        "conditions": [
            {"type": "ServiceResolved", "status": "True", "reason": "ServiceResolved", "message": "ok"},
            {"type": "SubdomainsMatch", "status": "True", "reason": "SubdomainsMatch", "message": "ok"},
        ],
    })
}

/// One published identity of `web`.
fn published(ordinal: i32, ip: &str) -> Value {
    json!({
        "ordinal": ordinal, "pod": format!("web-{ordinal}"), "hostname": format!("web-{ordinal}"),
        "addresses": [ip], "state": "Ready", "published": true, "node": "node-a", "claims": [],
    })
}

/// PeerSlice `web.<block>` as the controller would write it.
fn peerslice(block: i32, identities: Vec<Value>) -> Value {
    json!({
        "apiVersion": "petdns.io/v1alpha2", "kind": "PeerSlice",
        "metadata": {"name": format!("web.{block}"), "namespace": NS,
                     "labels": {"petdns.io/peer-set": "web"}},
        "spec": {"peerSet": "web", "block": block, "ready": "", "identities": identities},
    })
}

#[test]
fn serve_kube_waits_for_the_list_and_ignores_invalid_peersets_and_slices() {
    let c = Cluster::new();
    let (peersets, slices) = (c.peersets(), c.peerslices());
    // A slice may arrive before its PeerSet: it waits for it.
    c.create(
        slices.clone(),
        peerslice(0, vec![published(0, "192.0.2.10")]),
    );
    c.create(
        slices.clone(),
        peerslice(1, vec![published(150, "192.0.2.50")]),
    );
    c.create(
        peersets.clone(),
        json!({
            "apiVersion": "petdns.io/v1alpha2", "kind": "PeerSet",
            "metadata": {"name": "web", "namespace": NS},
            "spec": peerset_spec(200),
        }),
    );
    c.merge_status(peersets.clone(), "web", peerset_status("2/200", 2));

    // Started while the API server holds every request: not ready, SERVFAIL.
    c.api.pause();
    let dns = c.serve(false);
    let web0 = host("web-0", "nginx");
    let web150 = host("web-150", "nginx");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        let d = dns.dig(&["A", &web0]);
        assert_eq!(d.status, "SERVFAIL", "before the initial list:\n{d}");
        let other = dns.dig(&["A", &host("nope-0", "nginx")]);
        assert_eq!(
            other.status, "SERVFAIL",
            "no false NXDOMAIN before the list:\n{other}"
        );
        assert!(matches!(dns.get("/readyz"), Ok((503, _))));
    }
    c.api.resume();
    dns.wait_ready();
    wait_dig(&dns, &["A", &web0], "slice web.0", is_a(&["192.0.2.10"]));
    wait_dig(&dns, &["A", &web150], "slice web.1", is_a(&["192.0.2.50"]));
    // Declared, in no slice: NODATA, never NXDOMAIN.
    wait_dig(&dns, &["A", &host("web-7", "nginx")], "NODATA", is_nodata);

    // A slice with garbage is rejected whole, counted, and its last good state keeps serving,
    // as do the set's other slices.
    let rejected = |metric_name: &str, n: f64| {
        poll(DEADLINE, || (metric(&dns, metric_name) >= n).then_some(()))
            .unwrap_or_else(|| panic!("{metric_name} never reached {n}"))
    };
    let replace = |slice: Value| {
        let name = slice["metadata"]["name"].as_str().unwrap().to_string();
        c.merge(
            slices.clone(),
            &name,
            json!({"spec": slice["spec"].clone()}),
        );
    };
    let mut no_address = published(150, "192.0.2.99");
    no_address["addresses"] = json!([]);
    replace(peerslice(1, vec![no_address, published(151, "192.0.2.51")]));
    rejected("petdns_invalid_peerslices_total", 1.0);
    replace(peerslice(1, vec![published(42, "192.0.2.42")]));
    rejected("petdns_invalid_peerslices_total", 2.0);
    let mut intruder = published(160, "192.0.2.98");
    intruder["pod"] = json!("intruder-160");
    replace(peerslice(1, vec![intruder]));
    rejected("petdns_invalid_peerslices_total", 3.0);
    replace(peerslice(0, vec![published(0, "192.0.2.11")]));
    wait_dig(
        &dns,
        &["A", &web0],
        "the other slice's update",
        is_a(&["192.0.2.11"]),
    );
    let d = dns.dig(&["A", &web150]);
    assert!(is_a(&["192.0.2.50"])(&d), "web.1's last good state:\n{d}");
    for name in [host("web-151", "nginx"), host("web-42", "nginx")] {
        let d = dns.dig(&["A", &name]);
        assert!(is_nodata(&d), "nothing of a rejected slice is served:\n{d}");
    }
    let d = dns.dig(&["A", &host("intruder-160", "nginx")]);
    assert!(is_nxdomain(&d), "the intruder must not be served:\n{d}");

    // A PeerSet with garbage is rejected too, the last good one serving.
    let mut bad = peerset_spec(200);
    bad["sliceSize"] = json!(0);
    c.merge(peersets.clone(), "web", json!({"spec": bad}));
    rejected("petdns_invalid_peersets_total", 1.0);
    let d = dns.dig(&["A", &web0]);
    assert!(is_a(&["192.0.2.11"])(&d), "after an invalid PeerSet:\n{d}");

    // Valid again: served again; a deleted slice takes its identities with it.
    c.merge(peersets, "web", json!({"spec": peerset_spec(200)}));
    replace(peerslice(1, vec![published(150, "192.0.2.52")]));
    wait_dig(
        &dns,
        &["A", &web150],
        "the new address",
        is_a(&["192.0.2.52"]),
    );
    c.delete(slices, "web.1");
    wait_dig(
        &dns,
        &["A", &web150],
        "NODATA once its slice is gone",
        is_nodata,
    );
}

#[test]
fn serve_kube_namespace_limits_what_is_served() {
    let c = Cluster::new();
    // The same PeerSet in two namespaces; the server watches only `shop`.
    for ns in [NS, "other"] {
        let api = peer_api(&c.client, ns, "PeerSet");
        c.create(
            api.clone(),
            json!({
                "apiVersion": "petdns.io/v1alpha2", "kind": "PeerSet",
                "metadata": {"name": "web", "namespace": ns},
                "spec": peerset_spec(1),
            }),
        );
        c.merge_status(api, "web", peerset_status("1/1", 1));
        let mut slice = peerslice(0, vec![published(0, "192.0.2.10")]);
        slice["metadata"]["namespace"] = json!(ns);
        c.create(peer_api(&c.client, ns, "PeerSlice"), slice);
    }
    let dns = Server::spawn(
        &[
            "serve",
            "--kube",
            "--kubeconfig",
            c.kubeconfig(),
            "--namespace",
            NS,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        true,
    );
    wait_dig(
        &dns,
        &["A", &host("web-0", "nginx")],
        "the watched namespace",
        is_a(&["192.0.2.10"]),
    );
    let other = dns.dig(&["A", "web-0.nginx.other.svc.cluster.local"]);
    assert_eq!(
        other.status, "NXDOMAIN",
        "an unwatched namespace is not served:\n{other}"
    );
}

/// Bytes of watch events one watcher receives from the in-process API server, per single-pod
/// readiness flip, for sets of 3, 100, 1,000 and 10,000 Ready pods (`PETDNS_TRAFFIC_SIZES`),
/// with the controller of this build or of `PETDNS_BIN` (a v1alpha1 build: the fake serves
/// both versions). Not in the default run:
/// `cargo test --test cluster -- --ignored --nocapture watch_traffic`; written to
/// `bench/out/watch-traffic-inprocess-<version>.json`. tests/kubernetes/traffic.rs measures
/// the same on the real API server.
#[test]
#[ignore = "a measurement: sets of up to 10,000 pods"]
fn watch_traffic_on_the_in_process_api_server() {
    use std::io::{BufRead, BufReader, Read, Write};
    let bin = std::env::var("PETDNS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_petdns").into());
    let crd = std::process::Command::new(&bin)
        .arg("crd")
        .output()
        .expect("petdns crd");
    let crds: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&crd.stdout)).expect("CRD YAML");
    let version = crds[0]["spec"]["versions"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let sizes: Vec<i32> = std::env::var("PETDNS_TRAFFIC_SIZES")
        .unwrap_or_else(|_| "3,100,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let address = |o: i32| format!("10.244.{}.{}", o / 256, o % 256);

    /// Counts the payload bytes of a chunked HTTP watch response.
    fn watch(addr: std::net::SocketAddr, path: &str) -> Arc<std::sync::atomic::AtomicU64> {
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
        )
        .expect("request");
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = bytes.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            // Headers.
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let Ok(n) = usize::from_str_radix(line.trim(), 16) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0u8; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        bytes
    }

    let mut rows = Vec::new();
    for n in sizes {
        let c = Cluster::new();
        c.node("node-a");
        let _controller = Server::spawn_with(
            &bin,
            &[
                "controller",
                "--kubeconfig",
                c.kubeconfig(),
                "--admin",
                "127.0.0.1:0",
                "--lease-namespace",
                "petdns",
                "--identity",
                "measure",
                "--lease-seconds",
                "3",
            ],
            true,
        );
        c.service("web", "web", false, "None");
        c.statefulset("web", "web", n, 0);
        for o in 0..n {
            c.running_pod("web", o, "web", &address(o), true);
        }
        let ready = |want: String| {
            poll(Duration::from_secs(300), || {
                let ps = c
                    .api
                    .get(&format!("petdns.io/{version}"), "PeerSet", NS, "web")?;
                (ps["status"]["ready"] == want).then_some(())
            })
        };
        if ready(format!("{n}/{n}")).is_none() {
            rows.push(json!({"replicas": n, "version": version, "served": false}));
            continue;
        }
        let rv = c.api.resource_version();
        let mut kinds = vec!["peersets"];
        if version != "v1alpha1" {
            kinds.push("peerslices");
        }
        let counters: Vec<_> = kinds
            .iter()
            .map(|k| {
                watch(
                    c.api.addr(),
                    &format!(
                        "/apis/petdns.io/{version}/namespaces/{NS}/{k}?watch=1&resourceVersion={rv}"
                    ),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let mut per_flip = vec![0u64; kinds.len()];
        let victim = n / 2;
        for (flip, want) in [
            (false, format!("{}/{n}", n - 1)),
            (true, format!("{n}/{n}")),
        ] {
            let before: Vec<u64> = counters.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            c.pod_status(&format!("web-{victim}"), &address(victim), flip, 0);
            ready(want).expect("the flip is written");
            std::thread::sleep(Duration::from_secs(1));
            for (i, b) in counters.iter().enumerate() {
                per_flip[i] += (b.load(Ordering::Relaxed) - before[i]) / 2;
            }
        }
        let bytes: serde_json::Map<String, Value> = kinds
            .iter()
            .zip(&per_flip)
            .map(|(k, b)| (k.to_string(), json!(b)))
            .collect();
        let row = json!({"replicas": n, "version": version, "served": true,
                         "readiness_flip_bytes": bytes});
        eprintln!("{row}");
        rows.push(row);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/out");
    std::fs::create_dir_all(&out).expect("bench/out");
    let path = out.join(format!("watch-traffic-inprocess-{version}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).expect("write");
    eprintln!("written to {}", path.display());
}
