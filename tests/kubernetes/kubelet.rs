//! The parts of a cluster the control plane does not run, played by the test: the scheduler
//! (binds each new pod to a Node through the `pods/binding` subresource) and the kubelet
//! (registers Nodes, renews their Leases every second, gives a bound pod an address, phase
//! Running and its Ready condition through the status subresource, and removes a pod whose
//! deletion was asked for once its "containers" stopped).
//!
//! A pod is Ready unless the test says otherwise ([`Readiness`]). A Node whose Lease is no
//! longer renewed ([`Kubelet::lose_node`]) is left alone, pods included, as a dead kubelet
//! would leave it: the node lifecycle controller is what marks it and its pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use crate::plane::ControlPlane;

/// What the kubelet makes of a pod of the test's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Bound, Running, an address, Ready (the default).
    Ready,
    /// Bound, Running, an address, not Ready (a failing readiness probe).
    NotReady,
    /// Bound, no address yet (image still pulling): phase Pending.
    NoAddress,
    /// Never bound: no Node fits it.
    Unscheduled,
}

#[derive(Default)]
struct State {
    readiness: HashMap<String, Readiness>,
    /// What the pods of a namespace get unless `readiness` names them (default: Ready).
    namespace_readiness: HashMap<String, Readiness>,
    /// The Node new pods of a namespace are bound to (default: the first Node).
    node_of_namespace: HashMap<String, String>,
    /// Nodes, and whether their Lease is renewed.
    nodes: BTreeMap<String, bool>,
    /// Addresses by pod UID: a pod keeps its address, a new pod gets a new one.
    addresses: HashMap<String, Vec<IpAddr>>,
    next_address: u32,
    /// Addresses given by the test, by `namespace/pod` (the benchmark's model).
    assigned: HashMap<String, Vec<IpAddr>>,
    /// Addresses from 10.244.0.0/16, a pod CIDR as clusters have them (for measurements at
    /// thousands of pods), instead of the 254 of 198.51.100.0/24.
    pod_cidr: bool,
    dual_stack: HashSet<String>,
    terminating: HashSet<String>,
}

pub struct Kubelet {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    state: Arc<Mutex<State>>,
}

/// How long a pod whose deletion was asked for stays Terminating before the kubelet removes it.
const TERMINATION: Duration = Duration::from_millis(700);

impl Kubelet {
    /// Registers `nodes` (Ready, Leases renewed) and starts playing scheduler and kubelet for
    /// every pod of the cluster.
    pub fn start(plane: &ControlPlane, nodes: &[&str]) -> Kubelet {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = plane.client(&rt);
        let state = Arc::new(Mutex::new(State::default()));
        {
            let mut s = state.lock().unwrap();
            for n in nodes {
                s.nodes.insert(n.to_string(), true);
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            rt.block_on(register_node(&client, n, i))
                .expect("register node");
        }
        rt.spawn(renew_leases(client.clone(), state.clone()));
        rt.spawn(run_pods(client.clone(), state.clone()));
        Kubelet { rt, client, state }
    }

    /// Pods of `namespace` get an IPv6 address besides their IPv4 one.
    pub fn dual_stack(&self, namespace: &str) {
        self.state
            .lock()
            .unwrap()
            .dual_stack
            .insert(namespace.to_string());
    }

    /// Pod `namespace/pod` gets these addresses, whatever else applies.
    pub fn assign(&self, addresses: HashMap<String, Vec<IpAddr>>) {
        self.state.lock().unwrap().assigned.extend(addresses);
    }

    /// Pods get addresses from 10.244.0.0/16 from now on (see `State::pod_cidr`).
    pub fn use_pod_cidr(&self) {
        self.state.lock().unwrap().pod_cidr = true;
    }

    /// What the pods of `namespace` get unless [`Kubelet::set`] names them.
    pub fn set_namespace(&self, namespace: &str, readiness: Readiness) {
        self.state
            .lock()
            .unwrap()
            .namespace_readiness
            .insert(namespace.to_string(), readiness);
    }

    /// New pods of `namespace` are bound to `node`.
    pub fn place(&self, namespace: &str, node: &str) {
        self.state
            .lock()
            .unwrap()
            .node_of_namespace
            .insert(namespace.to_string(), node.to_string());
    }

    /// Sets what the kubelet makes of pod `namespace/name` (it may not exist yet), and applies
    /// it at once to the pod if it exists.
    pub fn set(&self, namespace: &str, name: &str, readiness: Readiness) {
        self.state
            .lock()
            .unwrap()
            .readiness
            .insert(format!("{namespace}/{name}"), readiness);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let (client, state) = (self.client.clone(), self.state.clone());
        self.rt.block_on(async move {
            if let Ok(Some(pod)) = api.get_opt(name).await {
                handle(&client, &state, pod).await;
            }
        });
    }

    /// Registers one more Node (Ready, its Lease renewed).
    pub fn add_node(&self, node: &str) {
        let i = {
            let mut s = self.state.lock().unwrap();
            s.nodes.insert(node.to_string(), true);
            s.nodes.keys().position(|n| n == node).unwrap_or(0)
        };
        self.rt
            .block_on(register_node(&self.client, node, i))
            .expect("register node");
    }

    /// Stops renewing `node`'s Lease, as when its kubelet dies or the node is cut off.
    pub fn lose_node(&self, node: &str) {
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(node.to_string(), false);
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

async fn register_node(client: &kube::Client, name: &str, i: usize) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .expect("node");
    nodes.create(&PostParams::default(), &node).await?;
    let heartbeat = serde_json::to_value(Time(now())).expect("time");
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status (played by the test)",
                    "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat,
                }],
                // RFC 5737 documentation addresses: nothing ever connects to them.
                "addresses": [
                    {"type": "InternalIP", "address": format!("192.0.2.{}", 10 + i)},
                    {"type": "Hostname", "address": name},
                ],
            }})),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": serde_json::to_value(MicroTime(now())).expect("time"),
        },
    }))
    .expect("lease");
    leases.create(&PostParams::default(), &lease).await?;
    Ok(())
}

/// Renews the Lease of every Node still alive, every second (a kubelet renews every 10 s, for
/// a 40 s grace period; the test plane's grace is a few seconds).
async fn renew_leases(client: kube::Client, state: Arc<Mutex<State>>) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let alive: Vec<String> = state
            .lock()
            .unwrap()
            .nodes
            .iter()
            .filter(|(_, renewed)| **renewed)
            .map(|(n, _)| n.clone())
            .collect();
        for node in alive {
            let patch = json!({"spec": {"renewTime": serde_json::to_value(MicroTime(now())).expect("time")}});
            // An API server being restarted refuses this; the next second tries again.
            let _ = leases
                .patch(&node, &PatchParams::default(), &Patch::Merge(patch))
                .await;
        }
    }
}

/// Watches every pod and brings each to what its [`Readiness`] says.
async fn run_pods(client: kube::Client, state: Arc<Mutex<State>>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher(pods).boxed();
    while let Some(event) = events.next().await {
        if let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event {
            handle(&client, &state, pod).await;
        }
    }
}

fn watcher(pods: Api<Pod>) -> impl futures::Stream<Item = watcher::Result<Event<Pod>>> {
    watcher::watcher(pods, watcher::Config::default()).default_backoff()
}

/// One step of the scheduler's or the kubelet's work on `pod`.
async fn handle(client: &kube::Client, state: &Arc<Mutex<State>>, pod: Pod) {
    let (Some(ns), Some(name), Some(uid)) = (
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
        pod.metadata.uid.clone(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let (readiness, target, node_alive) = {
        let s = state.lock().unwrap();
        let readiness = s
            .readiness
            .get(&format!("{ns}/{name}"))
            .or_else(|| s.namespace_readiness.get(&ns))
            .copied()
            .unwrap_or(Readiness::Ready);
        let target = s
            .node_of_namespace
            .get(&ns)
            .cloned()
            .or_else(|| s.nodes.keys().next().cloned());
        let alive = node
            .as_ref()
            .is_none_or(|n| s.nodes.get(n).copied().unwrap_or(false));
        (readiness, target, alive)
    };
    if !node_alive {
        return; // a lost node's kubelet does nothing
    }
    if pod.metadata.deletion_timestamp.is_some() {
        // The API server removes an unbound pod itself; a bound one waits for its kubelet.
        if node.is_some() && state.lock().unwrap().terminating.insert(uid.clone()) {
            let api = api.clone();
            tokio::spawn(async move {
                tokio::time::sleep(TERMINATION).await;
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let _ = api.delete(&name, &dp).await;
            });
        }
        return;
    }
    let Some(node) = node else {
        if readiness != Readiness::Unscheduled
            && let Some(target) = target
        {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": target},
            });
            let _ = api
                .create_subresource::<Value, Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
        }
        return;
    };
    let addresses = if readiness == Readiness::NoAddress {
        Vec::new()
    } else {
        let mut s = state.lock().unwrap();
        let dual = s.dual_stack.contains(&ns);
        if let Some(given) = s.assigned.get(&format!("{ns}/{name}")).cloned() {
            s.addresses.insert(uid.clone(), given);
        }
        if !s.addresses.contains_key(&uid) {
            s.next_address += 1;
            let n = s.next_address;
            let v4 = if s.pod_cidr {
                assert!(
                    n < 65_535,
                    "the test kubelet ran out of addresses in 10.244.0.0/16"
                );
                format!("10.244.{}.{}", n / 256, n % 256)
            } else {
                assert!(
                    n < 255,
                    "the test kubelet ran out of addresses in 198.51.100.0/24"
                );
                format!("198.51.100.{n}")
            };
            let mut a: Vec<IpAddr> = vec![v4.parse().unwrap()];
            if dual {
                a.push(format!("2001:db8:ffff::{n:x}").parse().unwrap());
            }
            s.addresses.insert(uid.clone(), a);
        }
        s.addresses[&uid].clone()
    };
    let ready = readiness == Readiness::Ready;
    let phase = if addresses.is_empty() {
        "Pending"
    } else {
        "Running"
    };
    let status = pod.status.as_ref();
    let has = |t: &str, want: bool| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == t))
            .is_some_and(|c| (c.status == "True") == want)
    };
    let current_ip = status.and_then(|s| s.pod_ip.clone());
    let want_ip = addresses.first().map(ToString::to_string);
    if status.and_then(|s| s.phase.as_deref()) == Some(phase)
        && current_ip == want_ip
        && has("Ready", ready)
    {
        return;
    }
    let t = serde_json::to_value(Time(now())).expect("time");
    let cond = |ty: &str, ok: bool| json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": t});
    let host_ip = format!(
        "192.0.2.{}",
        10 + state
            .lock()
            .unwrap()
            .nodes
            .keys()
            .position(|n| *n == node)
            .unwrap_or(0)
    );
    let mut patch = json!({"status": {
        "phase": phase,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "conditions": [
            cond("PodScheduled", true),
            cond("Initialized", true),
            cond("ContainersReady", ready),
            cond("Ready", ready),
        ],
    }});
    if let Some(ip) = want_ip {
        patch["status"]["podIP"] = json!(ip);
        patch["status"]["podIPs"] = json!(
            addresses
                .iter()
                .map(|a| json!({"ip": a.to_string()}))
                .collect::<Vec<_>>()
        );
        patch["status"]["startTime"] = t.clone();
    }
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await;
}
