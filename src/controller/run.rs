//! `petdns controller`: watches StatefulSets, Services, StatefulSet pods and Nodes, keeps one
//! PeerSet per StatefulSet. Every replica watches (a warm standby); only the holder of the
//! leader Lease writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cache::Cache;
use super::cluster::{ClusterIndex, Key};
use crate::admin::{Health, KubeMetrics};
use crate::identity::{
    ConditionStatus, MAX_SLICE_SIZE, PEER_SET_LABEL, POD_NAME_LABEL, PeerSet, PeerSetStatus,
    PeerSlice,
};
use crate::k8s::{WatchHealth, with_backoff};

/// The API version of every PeerSet and PeerSlice written.
const API_VERSION: &str = "petdns.io/v1alpha2";

/// The field manager of every PeerSet and PeerSlice write.
pub const FIELD_MANAGER: &str = "petdns-controller";

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Namespace of the leader Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's identity in the Lease (pod name in a cluster).
    pub identity: String,
    /// Lease duration; a crashed leader is replaced after about this long.
    pub lease_seconds: u64,
    /// SRV priority for Services without a `petdns.io/srv-priority` annotation.
    pub srv_priority: crate::identity::SrvPriority,
    /// Identities per PeerSlice (`--slice-size`).
    pub slice_size: i32,
}

/// One event from any watch. Boxed: Kubernetes objects are large and sizes differ a lot.
enum Change {
    Set(Box<Event<StatefulSet>>),
    Service(Box<Event<Service>>),
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    PeerSet(Box<Event<PeerSet>>),
    Slice(Box<Event<PeerSlice>>),
    WatchError(&'static str, watcher::Error),
}

impl Change {
    /// The watch this change came from.
    fn kind(&self) -> &'static str {
        match self {
            Change::Set(_) => "statefulsets",
            Change::Service(_) => "services",
            Change::Pod(_) => "pods",
            Change::Node(_) => "nodes",
            Change::PeerSet(_) => "peersets",
            Change::Slice(_) => "peerslices",
            Change::WatchError(kind, _) => kind,
        }
    }
}

/// Objects buffered between `Init` and `InitDone` of one watch, then swapped in whole.
struct Relist<K> {
    items: Option<Vec<K>>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Relist { items: None }
    }
}

impl<K> Relist<K> {
    /// Returns the complete list when the relist finishes.
    fn feed(&mut self, ev: Event<K>) -> Result<Option<Vec<K>>, Event<K>> {
        match ev {
            Event::Init => {
                self.items = Some(Vec::new());
                Ok(None)
            }
            Event::InitApply(k) => {
                self.items.get_or_insert_with(Vec::new).push(k);
                Ok(None)
            }
            Event::InitDone => Ok(Some(self.items.take().unwrap_or_default())),
            other => Err(other),
        }
    }
}

fn stream<K>(
    api: Api<K>,
    cfg: watcher::Config,
    wrap: fn(Box<Event<K>>) -> Change,
    kind: &'static str,
) -> BoxStream<'static, Change>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    with_backoff(watcher(api, cfg))
        .map(move |r| match r {
            Ok(ev) => wrap(Box::new(ev)),
            Err(e) => Change::WatchError(kind, e),
        })
        .boxed()
}

/// Runs until `shutdown`.
pub async fn run(
    client: Client,
    cfg: ControllerConfig,
    health: Arc<Health>,
    metrics: Arc<KubeMetrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
        .with_namespace(&cfg.lease_namespace)
        .with_identity(&cfg.identity)
        .with_duration(cfg.lease_seconds)
        .with_grace(cfg.lease_seconds.div_ceil(3).max(1))
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await?;
    let (mut leader_rx, lease_task) = lease.watch().await;

    let pods_cfg = watcher::Config::default().labels(POD_NAME_LABEL);
    let mut changes = futures::stream::select_all(vec![
        stream(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
            Change::Set,
            "statefulsets",
        ),
        stream(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            Change::Service,
            "services",
        ),
        stream(
            Api::<Pod>::all(client.clone()),
            pods_cfg,
            Change::Pod,
            "pods",
        ),
        stream(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            Change::Node,
            "nodes",
        ),
        stream(
            Api::<PeerSet>::all(client.clone()),
            watcher::Config::default(),
            Change::PeerSet,
            "peersets",
        ),
        stream(
            Api::<PeerSlice>::all(client.clone()),
            watcher::Config::default().labels(PEER_SET_LABEL),
            Change::Slice,
            "peerslices",
        ),
    ]);

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: Some(cfg.identity.clone()),
    };
    let mut state = State {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        index: ClusterIndex::new(cfg.srv_priority),
        peersets: Cache::default(),
        slices: Cache::default(),
        slice_size: cfg.slice_size.clamp(1, MAX_SLICE_SIZE),
        dirty: BTreeSet::new(),
        relists: Default::default(),
        watches: WatchHealth::new(KINDS.len()),
        metrics: metrics.clone(),
    };
    let mut leader = *leader_rx.borrow();
    metrics.leader.set(i64::from(leader));
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = leader_rx.changed() => {
                if changed.is_err() {
                    warn!("leader election stopped; retrying is up to the process supervisor");
                    anyhow::bail!("leader election task ended");
                }
                let now_leader = *leader_rx.borrow_and_update();
                if now_leader != leader {
                    leader = now_leader;
                    metrics.leader.set(i64::from(leader));
                    info!(leader, identity = %cfg.identity, "leadership changed");
                    if leader {
                        state.mark_all_dirty();
                    }
                }
            }
            Some(change) = changes.next() => {
                state.handle(change);
                // Take whatever else is ready before writing, so a burst becomes one pass.
                while let Some(Some(change)) = futures::FutureExt::now_or_never(changes.next()) {
                    state.handle(change);
                }
                if state.watches.all_synced() {
                    health.set_loaded();
                }
            }
            _ = retry.tick() => {}
        }
        state.update_health();
        if leader && state.watches.all_synced() && !state.dirty.is_empty() {
            state.write_dirty().await;
        }
    }
    drop(leader_rx);
    // Give the lease up so the standby takes over at once instead of after the lease expires.
    if let Ok(Ok(Ok(manager))) = tokio::time::timeout(Duration::from_secs(5), lease_task).await
        && let Err(e) = manager.release().await
    {
        warn!(error = %e, "could not release the leader lease");
    }
    Ok(())
}

#[derive(Default)]
struct Relists {
    sets: Relist<StatefulSet>,
    services: Relist<Service>,
    pods: Relist<Pod>,
    nodes: Relist<Node>,
    peersets: Relist<PeerSet>,
    slices: Relist<PeerSlice>,
}

/// The watches the controller runs, by the kind `Change::kind` names.
const KINDS: [&str; 6] = [
    "statefulsets",
    "services",
    "pods",
    "nodes",
    "peersets",
    "peerslices",
];

struct State {
    client: Client,
    recorder: Recorder,
    index: ClusterIndex,
    /// PeerSets and PeerSlices as the API server has them.
    peersets: Cache<PeerSet>,
    slices: Cache<PeerSlice>,
    slice_size: i32,
    /// Sets whose PeerSet or slices may need a write.
    dirty: BTreeSet<Key>,
    relists: Relists,

    watches: WatchHealth,
    metrics: Arc<KubeMetrics>,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    fn mark_all_dirty(&mut self) {
        let keys: Vec<Key> = self
            .index
            .set_keys()
            .cloned()
            .chain(self.peersets.keys().cloned())
            .collect();
        self.dirty.extend(keys);
    }

    fn handle(&mut self, change: Change) {
        self.metrics.last_event_seconds.set(now_seconds());
        let kind = change.kind();
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        if matches!(change, Change::WatchError(..)) {
            self.watches.failed(i, Instant::now());
        } else {
            self.watches.delivered(i);
        }
        self.update_health();
        let affected = match change {
            Change::WatchError(kind, e) => {
                self.metrics.watch_errors.inc();
                warn!(kind, error = %e, "watch failed; retrying with backoff (answers keep coming from the last state)");
                return;
            }
            Change::Set(ev) => match self.relists.sets.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let affected = self.index.reset_sets(all);
                    self.synced("statefulsets", affected)
                }
                Err(Event::Apply(o)) => self.index.apply_set(o),
                Err(Event::Delete(o)) => self.index.delete_set(&o),
                Err(_) => return,
            },
            Change::Service(ev) => match self.relists.services.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let affected = self.index.reset_services(all);
                    self.synced("services", affected)
                }
                Err(Event::Apply(o)) => self.index.apply_service(o),
                Err(Event::Delete(o)) => self.index.delete_service(&o),
                Err(_) => return,
            },
            Change::Pod(ev) => match self.relists.pods.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let affected = self.index.reset_pods(all);
                    self.synced("pods", affected)
                }
                Err(Event::Apply(o)) => self.index.apply_pod(o),
                Err(Event::Delete(o)) => self.index.delete_pod(&o),
                Err(_) => return,
            },
            Change::Node(ev) => match self.relists.nodes.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let affected = self.index.reset_nodes(all);
                    self.synced("nodes", affected)
                }
                Err(Event::Apply(o)) => self.index.apply_node(o),
                Err(Event::Delete(o)) => self.index.delete_node(&o),
                Err(_) => return,
            },
            Change::PeerSet(ev) => match self.relists.peersets.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let keys = self.peersets.reset(all);
                    self.synced("peersets", keys)
                }
                Err(Event::Apply(o)) => match self.peersets.applied(o) {
                    Some(k) => vec![k],
                    None => return,
                },
                Err(Event::Delete(o)) => match self.peersets.deleted(&o) {
                    Some(k) => vec![k],
                    None => return,
                },
                Err(_) => return,
            },
            Change::Slice(ev) => match self.relists.slices.feed(*ev) {
                Ok(None) => return,
                Ok(Some(all)) => {
                    let keys = self.slices.reset(all);
                    let sets = keys.iter().filter_map(|k| self.set_of_slice(k)).collect();
                    self.synced("peerslices", sets)
                }
                Err(Event::Apply(o)) => match self.slices.applied(o) {
                    Some(k) => self.set_of_slice(&k).into_iter().collect(),
                    None => return,
                },
                Err(Event::Delete(o)) => match self.slices.deleted(&o) {
                    Some(k) => slice_set(&o, &k).into_iter().collect(),
                    None => return,
                },
                Err(_) => return,
            },
        };
        self.dirty.extend(affected);
    }

    fn synced(&mut self, kind: &'static str, affected: Vec<Key>) -> Vec<Key> {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        if self.watches.synced(i) {
            info!(kind, "initial list done");
        }
        self.update_health();
        affected
    }

    /// `watches_healthy` is 1 once every watch listed and none failed lately (`WatchHealth`).
    fn update_health(&self) {
        let healthy = self.watches.healthy(Instant::now());
        self.metrics.watches_healthy.set(i64::from(healthy));
    }

    /// Writes every dirty PeerSet whose desired content differs from what the API server has.
    async fn write_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            if let Err(e) = self.write_one(&key).await {
                self.metrics.write_errors.inc();
                warn!(namespace = %key.0, statefulset = %key.1, error = %e, "PeerSet write failed; will retry");
                self.dirty.insert(key);
            }
        }
    }

    async fn write_one(&mut self, key: &Key) -> Result<(), kube::Error> {
        let api: Api<PeerSet> = Api::namespaced(self.client.clone(), &key.0);
        let Some(set) = self.index.stateful_set(key).cloned() else {
            // The StatefulSet is gone: its PeerSet goes too (the garbage collector would also
            // remove it through the owner reference), and its slices with it (owned by it).
            if self.peersets.contains(key) {
                info!(namespace = %key.0, statefulset = %key.1, "deleting the PeerSet of a deleted StatefulSet");
                match api.delete(&key.1, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
                self.metrics.writes.inc();
                self.peersets.forget(key);
            }
            return Ok(());
        };
        let Some(table) = self.index.table(key) else {
            return Ok(());
        };
        let want = PeerSet::from_table(&table, set.metadata.generation, self.slice_size);
        let pp = PatchParams::apply(FIELD_MANAGER).force();

        // 1. The PeerSet's spec (and its owner, the StatefulSet): first, as the slices are
        //    owned by it and a DNS server reads them against it.
        let owner = set.controller_owner_ref(&());
        let current = self.peersets.get(key);
        let spec_same = current.is_some_and(|c| {
            c.spec == want.spec
                && owner.as_ref().is_none_or(|o| {
                    c.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == o.uid)
                })
        });
        let before = current.and_then(|c| c.status.clone());
        let mut peerset_uid = current.and_then(|c| c.metadata.uid.clone());
        let mut wrote = 0;
        if !spec_same {
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "PeerSet",
                "metadata": {
                    "name": key.1,
                    "namespace": key.0,
                    "labels": {"app.kubernetes.io/managed-by": "petdns"},
                    "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
                },
                "spec": want.spec,
            });
            let written = api.patch(&key.1, &pp, &Patch::Apply(&body)).await?;
            self.metrics.writes.inc();
            wrote += 1;
            peerset_uid = written.metadata.uid.clone();
            self.peersets.wrote(key, written);
        }
        let Some(peerset_uid) = peerset_uid else {
            return Ok(());
        };

        // 2. Each slice whose block changed; nothing else is written, so one pod's change
        //    writes one slice.
        let slices: Api<PeerSlice> = Api::namespaced(self.client.clone(), &key.0);
        // No `blockOwnerDeletion`, as on the PeerSet's own owner reference: setting it needs
        // update on `peersets/finalizers` where the OwnerReferencesPermissionEnforcement
        // admission plugin runs, and nothing waits on a slice's deletion.
        let owner = json!({
            "apiVersion": API_VERSION, "kind": "PeerSet", "name": key.1,
            "uid": peerset_uid, "controller": true,
        });
        for (name, spec) in &want.slices {
            let slice_key = (key.0.clone(), name.clone());
            let same = self.slices.get(&slice_key).is_some_and(|c| {
                c.spec == *spec
                    && c.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == peerset_uid)
            });
            if same {
                continue;
            }
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "PeerSlice",
                "metadata": {
                    "name": name,
                    "namespace": key.0,
                    "labels": {PEER_SET_LABEL: key.1, "app.kubernetes.io/managed-by": "petdns"},
                    "ownerReferences": [owner],
                },
                "spec": spec,
            });
            let written = slices.patch(name, &pp, &Patch::Apply(&body)).await?;
            self.metrics.slice_writes.inc();
            wrote += 1;
            self.slices.wrote(&slice_key, written);
        }

        // 3. Slices whose block has no identity any more.
        let stale: Vec<Key> = self
            .slices_of(key)
            .filter(|k| !want.slices.contains_key(&k.1))
            .collect();
        for slice_key in stale {
            match slices.delete(&slice_key.1, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            self.metrics.slice_writes.inc();
            wrote += 1;
            self.slices.forget(&slice_key);
        }

        // 4. The PeerSet's status: counts and conditions.
        if before.as_ref() != Some(&want.status) {
            let body = json!({"apiVersion": API_VERSION, "kind": "PeerSet", "status": want.status});
            let written = api.patch_status(&key.1, &pp, &Patch::Apply(&body)).await?;
            self.metrics.writes.inc();
            wrote += 1;
            self.peersets.wrote(key, written);
            self.announce(&set, before.as_ref(), &want.status).await;
        }
        if wrote > 0 {
            info!(namespace = %key.0, statefulset = %key.1, ready = %want.status.ready, slices = want.status.slices, writes = wrote, "PeerSet written");
        } else {
            debug!(namespace = %key.0, statefulset = %key.1, "PeerSet up to date");
        }
        Ok(())
    }

    /// The keys of the slices of set `key` the API server has.
    fn slices_of<'a>(&'a self, key: &'a Key) -> impl Iterator<Item = Key> + 'a {
        self.slices
            .keys()
            .filter(move |k| k.0 == key.0)
            .filter(move |k| self.set_of_slice(k).is_some_and(|s| s == *key))
            .cloned()
    }

    /// The set a slice in the cache belongs to, by its label.
    fn set_of_slice(&self, slice: &Key) -> Option<Key> {
        slice_set(self.slices.get(slice)?, slice)
    }

    /// A Kubernetes Event on the StatefulSet for every condition that newly went wrong.
    async fn announce(
        &self,
        set: &StatefulSet,
        before: Option<&PeerSetStatus>,
        after: &PeerSetStatus,
    ) {
        for c in after
            .conditions
            .iter()
            .filter(|c| c.status == ConditionStatus::False)
        {
            let was = before.and_then(|b| b.conditions.iter().find(|o| o.type_ == c.type_));
            if was.is_some_and(|w| w.status == c.status && w.reason == c.reason) {
                continue;
            }
            warn!(namespace = %set.namespace().unwrap_or_default(), statefulset = %set.name_any(), reason = %c.reason, detail = %c.message, "condition changed");
            let ev = KubeEvent {
                type_: EventType::Warning,
                reason: c.reason.clone(),
                note: Some(c.message.chars().take(1000).collect()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&ev, &set.object_ref(&())).await {
                warn!(error = %e, "could not publish a Kubernetes Event");
            }
        }
    }
}

/// The set a slice belongs to: its `petdns.io/peer-set` label, in its namespace.
fn slice_set(slice: &PeerSlice, key: &Key) -> Option<Key> {
    let set = slice.metadata.labels.as_ref()?.get(PEER_SET_LABEL)?;
    Some((key.0.clone(), set.clone()))
}
