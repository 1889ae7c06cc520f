//! `petdns controller`: watches StatefulSets, Services, StatefulSet pods and Nodes, keeps one
//! PeerSet per StatefulSet. Every replica watches (a warm standby); only the holder of the
//! leader Lease writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
use crate::identity::{ConditionStatus, POD_NAME_LABEL, PeerSet, PeerSetStatus};
use crate::k8s::with_backoff;

/// The field manager of every PeerSet write.
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
}

/// One event from any watch. Boxed: Kubernetes objects are large and sizes differ a lot.
enum Change {
    Set(Box<Event<StatefulSet>>),
    Service(Box<Event<Service>>),
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    PeerSet(Box<Event<PeerSet>>),
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
        dirty: BTreeSet::new(),
        too_large: BTreeSet::new(),
        relists: Default::default(),
        synced: BTreeSet::new(),
        failing: BTreeSet::new(),
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
                if state.synced.len() == 5 {
                    health.set_loaded();
                }
            }
            _ = retry.tick() => {}
        }
        if leader && state.synced.len() == 5 && !state.dirty.is_empty() {
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
}

struct State {
    client: Client,
    recorder: Recorder,
    index: ClusterIndex,
    /// PeerSets as the API server has them.
    peersets: Cache<PeerSet>,
    /// Sets whose PeerSet may need a write.
    dirty: BTreeSet<Key>,
    /// PeerSets whose status is over `PEERSET_STATUS_MAX_BYTES`: not written, said once.
    too_large: BTreeSet<Key>,
    relists: Relists,

    synced: BTreeSet<&'static str>,
    /// Watches whose last item was an error; healthy again with their next event.
    failing: BTreeSet<&'static str>,
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
        if matches!(change, Change::WatchError(..)) {
            self.failing.insert(kind);
        } else if self.failing.remove(kind) {
            self.update_health();
        }
        let affected = match change {
            Change::WatchError(kind, e) => {
                self.metrics.watch_errors.inc();
                self.metrics.watches_healthy.set(0);
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
        };
        self.dirty.extend(affected);
    }

    fn synced(&mut self, kind: &'static str, affected: Vec<Key>) -> Vec<Key> {
        if self.synced.insert(kind) {
            info!(kind, "initial list done");
        }
        self.update_health();
        affected
    }

    /// `watches_healthy` is 1 once every watch listed and none is failing.
    fn update_health(&self) {
        let healthy = self.synced.len() == 5 && self.failing.is_empty();
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
            // remove it through the owner reference).
            self.forget_too_large(key);
            if self.peersets.contains(key) {
                info!(namespace = %key.0, statefulset = %key.1, "deleting the PeerSet of a deleted StatefulSet");
                match api.delete(&key.1, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
                self.peersets.forget(key);
                self.metrics.writes.inc();
            }
            return Ok(());
        };
        let Some(table) = self.index.table(key) else {
            return Ok(());
        };
        let (spec, status) = PeerSet::from_table(&table, set.metadata.generation);
        if let Some(bytes) = status_too_large(&status) {
            if self.too_large.insert(key.clone()) {
                self.metrics
                    .peersets_too_large
                    .set(self.too_large.len() as i64);
                let note = format!(
                    "the PeerSet status for {} identities would be {bytes} bytes of JSON, over the \
                     {PEERSET_STATUS_MAX_BYTES} petdns writes (etcd stores at most 1.5 MiB per \
                     object by default); DNS answers for this StatefulSet stay at the last \
                     written state",
                    status.identities.len()
                );
                tracing::error!(namespace = %key.0, statefulset = %key.1, bytes, "PeerSet too large: not written");
                let ev = KubeEvent {
                    type_: EventType::Warning,
                    reason: "PeerSetTooLarge".into(),
                    note: Some(note),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                if let Err(e) = self.recorder.publish(&ev, &set.object_ref(&())).await {
                    warn!(error = %e, "could not publish a Kubernetes Event");
                }
            }
            return Ok(());
        }
        if self.forget_too_large(key) {
            info!(namespace = %key.0, statefulset = %key.1, "PeerSet fits again");
        }
        let current = self.peersets.get(key);
        let owner = set.controller_owner_ref(&());
        let spec_same = current.is_some_and(|c| {
            c.spec == spec
                && owner.as_ref().is_none_or(|o| {
                    c.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == o.uid)
                })
        });
        let before = current.and_then(|c| c.status.clone());
        let status_same = before.as_ref() == Some(&status);
        if spec_same && status_same {
            debug!(namespace = %key.0, statefulset = %key.1, "PeerSet up to date");
            return Ok(());
        }
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        if !spec_same {
            let body = json!({
                "apiVersion": "petdns.io/v1alpha1",
                "kind": "PeerSet",
                "metadata": {
                    "name": key.1,
                    "namespace": key.0,
                    "labels": {"app.kubernetes.io/managed-by": "petdns"},
                    "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
                },
                "spec": spec,
            });
            let written = api.patch(&key.1, &pp, &Patch::Apply(&body)).await?;
            self.metrics.writes.inc();
            self.peersets.wrote(key, written);
        }
        if !status_same {
            let body =
                json!({"apiVersion": "petdns.io/v1alpha1", "kind": "PeerSet", "status": status});
            let written = api.patch_status(&key.1, &pp, &Patch::Apply(&body)).await?;
            self.metrics.writes.inc();
            self.peersets.wrote(key, written);
            self.announce(&set, before.as_ref(), &status).await;
        }
        info!(namespace = %key.0, statefulset = %key.1, ready = %status.ready, "PeerSet written");
        Ok(())
    }

    /// `key` is no longer too large (it fits, or its StatefulSet is gone); true if it was.
    fn forget_too_large(&mut self, key: &Key) -> bool {
        let was = self.too_large.remove(key);
        self.metrics
            .peersets_too_large
            .set(self.too_large.len() as i64);
        was
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

/// The largest PeerSet status petdns writes, in bytes of JSON. A custom resource is stored as
/// JSON, and etcd refuses a request over 1.5 MiB by default (`--max-request-bytes`); this leaves
/// room for the spec, the metadata and the managed fields. At 183 to 341 bytes an identity
/// (`peerset_status_size_bound`; docs/deploy.md, "Limits") it holds 2,900 to 5,400 of them.
pub const PEERSET_STATUS_MAX_BYTES: usize = 1_000_000;

/// The JSON size of `status` when it is over `PEERSET_STATUS_MAX_BYTES`.
fn status_too_large(status: &PeerSetStatus) -> Option<usize> {
    let bytes = serde_json::to_vec(status).map_or(usize::MAX, |b| b.len());
    (bytes > PEERSET_STATUS_MAX_BYTES).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status of `n` Ready identities of StatefulSet `set` (pod names `<set>-<ordinal>`), each
    /// with the addresses, node and claims given.
    fn status_of(
        n: i32,
        set: &str,
        addresses: &[&str],
        node: &str,
        claims: &[&str],
    ) -> PeerSetStatus {
        use crate::identity::{Identity, IdentityState};
        PeerSetStatus {
            observed_generation: Some(3),
            ready: format!("{n}/{n}"),
            identities: (0..n)
                .map(|o| Identity {
                    ordinal: o,
                    pod: format!("{set}-{o}"),
                    hostname: format!("{set}-{o}"),
                    addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                    state: IdentityState::Ready,
                    published: true,
                    node: Some(node.into()),
                    revision: Some(format!("{set}-5d8f7c9b6d")),
                    claims: claims.iter().map(|c| format!("{c}-{set}-{o}")).collect(),
                })
                .collect(),
            conditions: Vec::new(),
        }
    }

    /// The bound holds thousands of identities, and a StatefulSet at the replica bound with
    /// realistic names is over it (so it is not written, rather than refused by etcd).
    #[test]
    fn peerset_status_size_bound() {
        let short = |n| status_of(n, "web", &["10.244.1.17"], "node-1", &["data"]);
        let long = |n| {
            status_of(
                n,
                "cassandra-ring-east",
                &["10.244.123.45", "fd00:10:244:7b::2d"],
                "ip-10-0-123-45.eu-west-1.compute.internal",
                &["data", "commitlog"],
            )
        };
        let per = |s: PeerSetStatus| serde_json::to_vec(&s).unwrap().len() / s.identities.len();
        let (short_bytes, long_bytes) = (per(short(1000)), per(long(1000)));
        assert!(
            (170..=200).contains(&short_bytes) && (320..=360).contains(&long_bytes),
            "bytes per identity: short names {short_bytes}, long names {long_bytes} \
             (docs/deploy.md quotes these)"
        );
        assert_eq!(status_too_large(&long(2500)), None);
        assert_eq!(status_too_large(&short(5000)), None);
        assert!(status_too_large(&long(3000)).is_some());
        let at_bound = status_too_large(&short(crate::identity::MAX_DECLARED));
        assert!(
            at_bound.is_some_and(|b| b > PEERSET_STATUS_MAX_BYTES),
            "{at_bound:?}"
        );
    }
}
