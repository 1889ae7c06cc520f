//! Cluster mode source: watches PeerSets and PeerSlices (written by `petdns controller`) and
//! publishes a table per set, from its PeerSet and the identities of all its slices as each
//! arrives. Not ready, and SERVFAIL in the zone, until every watch has listed once; when the
//! API server is unreachable the last state keeps serving while the watches retry with backoff
//! and relist after 410 Gone, and the staleness shows in the `petdns_kube_*` metrics.
//!
//! A PeerSet or a slice that fails validation is rejected whole, counted and logged, and its
//! last good state keeps serving, as do the set's other slices and every other set. One
//! object's change rebuilds its set only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Publish;
use super::manifests::BUILTIN_NAMESPACES;
use super::slim::{self, Interner, SlimIdentity};
use crate::admin::KubeMetrics;
use crate::identity::{
    Identity, IdentityTable, PeerSet, PeerSetError, PeerSetSpec, PeerSlice, check_block,
    parse_slice_name,
};
use crate::k8s::{WatchHealth, with_backoff};

type Key = (String, String);

/// PeerSets and their slices as a record source.
pub struct PeerSetSource<P: Publish> {
    client: Client,
    /// Namespaces to watch; empty means all.
    namespaces: Vec<String>,
    publish: P,
    metrics: Arc<KubeMetrics>,
    /// What the kept identities share (nodes, revisions, claim templates).
    interner: Interner,
}

/// One set as received: its PeerSet (the last good one) and its slices.
#[derive(Default)]
struct SetEntry {
    peerset: Option<PeerSet>,
    slices: BTreeMap<String, SliceEntry>,
}

enum SliceEntry {
    /// Arrived before its PeerSet: checked when the PeerSet comes.
    Pending(Box<PeerSlice>),
    /// The identities of the last good version of the slice, compact; `set` is the base of
    /// their derived names (the PeerSet's StatefulSet when they were checked).
    Good {
        set: Arc<str>,
        ids: Box<[SlimIdentity]>,
    },
}

impl SliceEntry {
    fn good(set: &str, ids: &[Identity], interner: &mut Interner) -> SliceEntry {
        SliceEntry::Good {
            set: Arc::from(set),
            ids: slim::compact(set, ids, interner),
        }
    }
}

/// What a slice's identities were checked against: when it changes, they are checked again.
fn layout(spec: &PeerSetSpec) -> (&str, i32, i32) {
    (&spec.stateful_set, spec.ordinals.start, spec.slice_size)
}

/// One watch: a kind in a scope (a namespace, or all of them).
struct Watch {
    kind: Kind,
    /// `None`: every namespace.
    namespace: Option<String>,
    /// Objects listed since `Init`, applied whole at `InitDone`.
    relisting: Option<Vec<Object>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    PeerSets,
    PeerSlices,
}

enum Object {
    Set(Box<PeerSet>),
    Slice(Box<PeerSlice>),
}

type Item = (usize, watcher::Result<Event<Object>>);

fn events<K>(api: Api<K>, i: usize, wrap: fn(K) -> Object) -> BoxStream<'static, Item>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    with_backoff(watcher(api, watcher::Config::default()))
        .map(move |r| {
            let event = r.map(|e| match e {
                Event::Init => Event::Init,
                Event::InitApply(o) => Event::InitApply(wrap(o)),
                Event::InitDone => Event::InitDone,
                Event::Apply(o) => Event::Apply(wrap(o)),
                Event::Delete(o) => Event::Delete(wrap(o)),
            });
            (i, event)
        })
        .boxed()
}

impl<P: Publish> PeerSetSource<P> {
    pub fn new(
        client: Client,
        namespaces: Vec<String>,
        publish: P,
        metrics: Arc<KubeMetrics>,
    ) -> Self {
        PeerSetSource {
            client,
            namespaces,
            publish,
            metrics,
            interner: Interner::default(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        let mut watches = Vec::new();
        let mut streams = Vec::new();
        for scope in scopes {
            for kind in [Kind::PeerSets, Kind::PeerSlices] {
                let i = watches.len();
                let client = self.client.clone();
                streams.push(match (kind, &scope) {
                    (Kind::PeerSets, None) => {
                        events(Api::<PeerSet>::all(client), i, |o| Object::Set(Box::new(o)))
                    }
                    (Kind::PeerSets, Some(ns)) => {
                        events(Api::<PeerSet>::namespaced(client, ns), i, |o| {
                            Object::Set(Box::new(o))
                        })
                    }
                    (Kind::PeerSlices, None) => events(Api::<PeerSlice>::all(client), i, |o| {
                        Object::Slice(Box::new(o))
                    }),
                    (Kind::PeerSlices, Some(ns)) => {
                        events(Api::<PeerSlice>::namespaced(client, ns), i, |o| {
                            Object::Slice(Box::new(o))
                        })
                    }
                });
                watches.push(Watch {
                    kind,
                    namespace: scope.clone(),
                    relisting: None,
                });
            }
        }
        let mut events = futures::stream::select_all(streams);
        let mut health = WatchHealth::new(watches.len());
        // Re-evaluates health while nothing arrives (a watch that stopped failing).
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sets: BTreeMap<Key, SetEntry> = BTreeMap::new();
        let mut published_once = false;
        // Sets changed since the last publication; a relist publishes everything.
        let mut dirty: BTreeSet<Key> = BTreeSet::new();
        let mut relisted = false;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => None,
                next = events.next() => match next {
                    Some(e) => Some(e),
                    None => anyhow::bail!("PeerSet watches ended"),
                },
            };
            if let Some(first) = first {
                self.handle(
                    &mut watches,
                    &mut health,
                    &mut sets,
                    first,
                    &mut dirty,
                    &mut relisted,
                );
                while let Some(Some(next)) = futures::FutureExt::now_or_never(events.next()) {
                    self.handle(
                        &mut watches,
                        &mut health,
                        &mut sets,
                        next,
                        &mut dirty,
                        &mut relisted,
                    );
                }
            }
            self.metrics
                .watches_healthy
                .set(i64::from(health.healthy(Instant::now())));
            if !health.all_synced() {
                continue;
            }
            if published_once && !relisted {
                if dirty.is_empty() {
                    continue;
                }
                // One object's change costs its set, not the whole table set.
                let mut upserts = Vec::new();
                let mut removed = Vec::new();
                for key in std::mem::take(&mut dirty) {
                    match sets.get(&key).and_then(|e| self.table(e)) {
                        Some(t) => upserts.push(t),
                        None => removed.push(key),
                    }
                }
                debug!(
                    changed = upserts.len(),
                    removed = removed.len(),
                    "PeerSets changed"
                );
                self.publish.changed(upserts, removed);
            } else if relisted || !published_once {
                dirty.clear();
                relisted = false;
                let tables: Vec<IdentityTable> =
                    sets.values().filter_map(|e| self.table(e)).collect();
                let mut namespaces: BTreeSet<String> =
                    BUILTIN_NAMESPACES.iter().map(|s| s.to_string()).collect();
                namespaces.extend(tables.iter().map(|t| t.namespace.clone()));
                namespaces.extend(self.namespaces.iter().cloned());
                info!(
                    peersets = tables.len(),
                    identities = tables.iter().map(|t| t.identities.len()).sum::<usize>(),
                    "PeerSets loaded"
                );
                self.publish.loaded(tables, namespaces);
                published_once = true;
                // The lists and the tables built from them are garbage now.
                super::watch::after_load();
            }
        }
    }

    /// The table a set serves: `None` while it has no good PeerSet.
    fn table(&self, entry: &SetEntry) -> Option<IdentityTable> {
        let ps = entry.peerset.as_ref()?;
        let slices: Vec<Vec<Identity>> = entry
            .slices
            .values()
            .filter_map(|s| match s {
                SliceEntry::Good { set, ids } => Some(slim::expand(set, ids)),
                SliceEntry::Pending(_) => None,
            })
            .collect();
        ps.to_table(slices.iter().map(Vec::as_slice)).ok()
    }

    /// Applies one watch item, marking the sets it changed (`relisted` when a relist did).
    fn handle(
        &mut self,
        watches: &mut [Watch],
        health: &mut WatchHealth,
        sets: &mut BTreeMap<Key, SetEntry>,
        (i, item): Item,
        dirty: &mut BTreeSet<Key>,
        relisted: &mut bool,
    ) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.last_event_seconds.set(now);
        let watch = &mut watches[i];
        match &item {
            Err(_) => health.failed(i, Instant::now()),
            Ok(_) => health.delivered(i),
        }
        match item {
            Err(e) => {
                self.metrics.watch_errors.inc();
                self.metrics.watches_healthy.set(0);
                let kind = match watch.kind {
                    Kind::PeerSets => "peersets",
                    Kind::PeerSlices => "peerslices",
                };
                warn!(kind, error = %e, "watch failed; serving the last state while retrying");
            }
            Ok(Event::Init) => watch.relisting = Some(Vec::new()),
            Ok(Event::InitApply(o)) => watch.relisting.get_or_insert_with(Vec::new).push(o),
            Ok(Event::InitDone) => {
                let listed = watch.relisting.take().unwrap_or_default();
                health.synced(i);
                let (kind, scope) = (watch.kind, watch.namespace.clone());
                let listed_keys: BTreeSet<Key> = listed.iter().filter_map(object_key).collect();
                let mut changed = BTreeSet::new();
                // What the list no longer has, of this kind and in scope, is gone.
                for (key, entry) in sets.iter_mut() {
                    if scope.as_deref().is_some_and(|ns| ns != key.0) {
                        continue;
                    }
                    match kind {
                        Kind::PeerSets => {
                            if entry.peerset.is_some() && !listed_keys.contains(key) {
                                entry.peerset = None;
                                changed.insert(key.clone());
                            }
                        }
                        Kind::PeerSlices => {
                            let before = entry.slices.len();
                            entry
                                .slices
                                .retain(|n, _| listed_keys.contains(&(key.0.clone(), n.clone())));
                            if entry.slices.len() != before {
                                changed.insert(key.clone());
                            }
                        }
                    }
                }
                for o in listed {
                    changed.extend(self.apply(sets, o));
                }
                *relisted |= !changed.is_empty();
                dirty.extend(changed);
                sets.retain(|_, e| e.peerset.is_some() || !e.slices.is_empty());
            }
            Ok(Event::Apply(o)) => dirty.extend(self.apply(sets, o)),
            Ok(Event::Delete(o)) => {
                dirty.extend(delete(sets, &o));
                sets.retain(|_, e| e.peerset.is_some() || !e.slices.is_empty());
            }
        }
    }

    /// A PeerSet or slice added or changed; returns its set's key if that changed anything.
    fn apply(&mut self, sets: &mut BTreeMap<Key, SetEntry>, o: Object) -> Option<Key> {
        match o {
            Object::Set(ps) => self.apply_peerset(sets, *ps),
            Object::Slice(s) => self.apply_slice(sets, *s),
        }
    }

    fn apply_peerset(
        &mut self,
        sets: &mut BTreeMap<Key, SetEntry>,
        mut ps: PeerSet,
    ) -> Option<Key> {
        let key = key_of(&ps)?;
        // Kept until the next version: only name, namespace, spec and status are read. The
        // managed fields of the controller's two appliers are the largest part of the rest.
        let meta = &mut ps.metadata;
        meta.managed_fields = None;
        meta.annotations = None;
        meta.labels = None;
        meta.owner_references = None;
        match ps.check() {
            Ok(()) => {}
            // Not reconciled yet: nothing to serve, nothing wrong.
            Err(PeerSetError::NoStatus(_)) => return None,
            Err(e) => {
                self.metrics.invalid_peersets.inc();
                self.publish.rejected();
                warn!(namespace = %key.0, name = %key.1, error = %e, "ignoring an invalid PeerSet; its last good state keeps serving");
                return None;
            }
        }
        let entry = sets.entry(key.clone()).or_default();
        if let Some(old) = &entry.peerset {
            if old.spec == ps.spec && old.status == ps.status {
                return None;
            }
            if layout(&old.spec) == layout(&ps.spec) {
                entry.peerset = Some(ps);
                return Some(key);
            }
        }
        // A first PeerSet, or a new layout: check the slices against it.
        let slices = std::mem::take(&mut entry.slices);
        for (name, slice) in slices {
            let checked = match slice {
                SliceEntry::Pending(s) => match s.identities(&ps.spec) {
                    Ok(ids) => Some(SliceEntry::good(
                        &ps.spec.stateful_set,
                        ids,
                        &mut self.interner,
                    )),
                    Err(e) => {
                        self.rejected_slice(&key.0, &name, &e);
                        None
                    }
                },
                // Checked against the set's previous layout: kept if it still fits.
                SliceEntry::Good { set, ids } => {
                    let expanded = slim::expand(&set, &ids);
                    parse_slice_name(&name)
                        .filter(|(_, block)| {
                            check_block(&name, *block, &expanded, &ps.spec).is_ok()
                        })
                        .map(|_| SliceEntry::Good { set, ids })
                }
            };
            if let Some(slice) = checked {
                entry.slices.insert(name, slice);
            }
        }
        entry.peerset = Some(ps);
        Some(key)
    }

    fn apply_slice(&mut self, sets: &mut BTreeMap<Key, SetEntry>, s: PeerSlice) -> Option<Key> {
        let (ns, name) = key_of(&s)?;
        let Some((set, _)) = parse_slice_name(&name) else {
            let e = PeerSetError::InvalidSlice {
                name: name.clone(),
                reason: "the name is not <peerSet>.<block>".into(),
            };
            self.rejected_slice(&ns, &name, &e);
            return None;
        };
        let key = (ns, set.to_string());
        let entry = sets.entry(key.clone()).or_default();
        let Some(ps) = &entry.peerset else {
            entry.slices.insert(name, SliceEntry::Pending(Box::new(s)));
            return None;
        };
        match s.identities(&ps.spec) {
            Ok(ids) => {
                if let Some(SliceEntry::Good { set, ids: old }) = entry.slices.get(&name)
                    && slim::expand(set, old) == ids
                {
                    return None;
                }
                let slice = SliceEntry::good(&ps.spec.stateful_set, ids, &mut self.interner);
                entry.slices.insert(name, slice);
                Some(key)
            }
            Err(e) => {
                self.rejected_slice(&key.0, &name, &e);
                None
            }
        }
    }

    fn rejected_slice(&mut self, namespace: &str, name: &str, e: &PeerSetError) {
        self.metrics.invalid_peerslices.inc();
        self.publish.rejected();
        warn!(namespace = %namespace, name = %name, error = %e, "ignoring an invalid PeerSlice; its last good state keeps serving");
    }
}

/// A PeerSet or slice deleted; returns its set's key if that changed anything.
fn delete(sets: &mut BTreeMap<Key, SetEntry>, o: &Object) -> Option<Key> {
    match o {
        Object::Set(ps) => {
            let key = key_of(ps.as_ref())?;
            let e = sets.get_mut(&key)?;
            e.peerset.take().map(|_| key)
        }
        Object::Slice(s) => {
            let (ns, name) = key_of(s.as_ref())?;
            let (set, _) = parse_slice_name(&name)?;
            let key = (ns, set.to_string());
            let e = sets.get_mut(&key)?;
            e.slices.remove(&name).map(|_| key)
        }
    }
}

fn key_of<K: Resource>(o: &K) -> Option<Key> {
    Some((o.meta().namespace.clone()?, o.meta().name.clone()?))
}

fn object_key(o: &Object) -> Option<Key> {
    match o {
        Object::Set(ps) => key_of(ps.as_ref()),
        Object::Slice(s) => key_of(s.as_ref()),
    }
}
