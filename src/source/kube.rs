//! Cluster mode source: watches PeerSets (written by `petdns controller`) and publishes their
//! tables. Not ready, and SERVFAIL in the zone, until every watch has listed once; when the API
//! server is unreachable the last state keeps serving while the watches retry with backoff and
//! relist after 410 Gone, and the staleness shows in the `petdns_kube_*` metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Publish;
use super::manifests::BUILTIN_NAMESPACES;
use crate::admin::KubeMetrics;
use crate::identity::{IdentityTable, PeerSet};
use crate::k8s::with_backoff;

type Key = (String, String);

/// PeerSets as a record source.
pub struct PeerSetSource<P: Publish> {
    client: Client,
    /// Namespaces to watch; empty means all.
    namespaces: Vec<String>,
    publish: P,
    metrics: Arc<KubeMetrics>,
}

struct WatchState {
    tables: BTreeMap<Key, IdentityTable>,
    relisting: Option<BTreeMap<Key, IdentityTable>>,
    synced: bool,
    /// The last item of this watch was an error; cleared by its next event.
    failing: bool,
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
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let apis: Vec<Api<PeerSet>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let mut states: Vec<WatchState> = apis
            .iter()
            .map(|_| WatchState {
                tables: BTreeMap::new(),
                relisting: None,
                synced: false,
                failing: false,
            })
            .collect();
        let streams = apis.into_iter().enumerate().map(|(i, api)| {
            with_backoff(watcher(api, watcher::Config::default()))
                .map(move |r| (i, r))
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        let mut published_once = false;
        // What changed since the last publication: single objects, or everything (a relist).
        let mut dirty: BTreeSet<Key> = BTreeSet::new();
        let mut relisted = false;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = events.next() => match next {
                    Some(e) => e,
                    None => anyhow::bail!("PeerSet watches ended"),
                },
            };
            let mut changed = self.handle(&mut states, first, &mut dirty, &mut relisted);
            while let Some(Some(next)) = futures::FutureExt::now_or_never(events.next()) {
                changed |= self.handle(&mut states, next, &mut dirty, &mut relisted);
            }
            let all_synced = states.iter().all(|s| s.synced);
            let healthy = all_synced && states.iter().all(|s| !s.failing);
            self.metrics.watches_healthy.set(i64::from(healthy));
            if all_synced && published_once && changed && !relisted {
                // One object's change costs that object, not the whole table set.
                let mut upserts = Vec::new();
                let mut removed = Vec::new();
                for key in std::mem::take(&mut dirty) {
                    match states.iter().find_map(|s| s.tables.get(&key)) {
                        Some(t) => upserts.push(t.clone()),
                        None => removed.push(key),
                    }
                }
                debug!(
                    changed = upserts.len(),
                    removed = removed.len(),
                    "PeerSets changed"
                );
                self.publish.changed(upserts, removed);
            } else if all_synced && (changed || !published_once) {
                dirty.clear();
                relisted = false;
                let tables: Vec<IdentityTable> = states
                    .iter()
                    .flat_map(|s| s.tables.values().cloned())
                    .collect();
                let mut namespaces: BTreeSet<String> =
                    BUILTIN_NAMESPACES.iter().map(|s| s.to_string()).collect();
                namespaces.extend(tables.iter().map(|t| t.namespace.clone()));
                namespaces.extend(self.namespaces.iter().cloned());
                info!(peersets = tables.len(), "PeerSets loaded");
                self.publish.loaded(tables, namespaces);
                published_once = true;
            }
        }
    }

    /// Applies one watch event; returns true when the tables changed.
    fn handle(
        &mut self,
        states: &mut [WatchState],
        (i, event): (usize, Result<Event<PeerSet>, watcher::Error>),
        dirty: &mut BTreeSet<Key>,
        relisted: &mut bool,
    ) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.last_event_seconds.set(now);
        let state = &mut states[i];
        state.failing = event.is_err();
        match event {
            Err(e) => {
                self.metrics.watch_errors.inc();
                self.metrics.watches_healthy.set(0);
                warn!(error = %e, "PeerSet watch failed; serving the last state while retrying");
                false
            }
            Ok(Event::Init) => {
                state.relisting = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(ps)) => {
                let previous = &state.tables;
                if let Some((key, table)) = self.accept(&ps, previous) {
                    state
                        .relisting
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key, table);
                }
                false
            }
            Ok(Event::InitDone) => {
                let fresh = state.relisting.take().unwrap_or_default();
                state.synced = true;
                let changed = fresh != state.tables;
                state.tables = fresh;
                *relisted |= changed;
                changed
            }
            Ok(Event::Apply(ps)) => match self.accept(&ps, &state.tables) {
                Some((key, table)) => {
                    let changed = state.tables.get(&key) != Some(&table);
                    if changed {
                        dirty.insert(key.clone());
                        state.tables.insert(key, table);
                    }
                    changed
                }
                None => false,
            },
            Ok(Event::Delete(ps)) => {
                match (ps.metadata.namespace.clone(), ps.metadata.name.clone()) {
                    (Some(ns), Some(name)) => {
                        let key = (ns, name);
                        let changed = state.tables.remove(&key).is_some();
                        if changed {
                            dirty.insert(key);
                        }
                        changed
                    }
                    _ => false,
                }
            }
        }
    }

    /// The table of a PeerSet; an invalid one keeps its previous table (if any) and is reported.
    fn accept(
        &mut self,
        ps: &PeerSet,
        previous: &BTreeMap<Key, IdentityTable>,
    ) -> Option<(Key, IdentityTable)> {
        let key = (ps.metadata.namespace.clone()?, ps.metadata.name.clone()?);
        match ps.to_table() {
            Ok(table) => Some((key, table)),
            Err(crate::identity::PeerSetError::NoStatus(_)) => None,
            Err(e) => {
                self.metrics.invalid_peersets.inc();
                self.publish.rejected();
                warn!(namespace = %key.0, name = %key.1, error = %e, "ignoring an invalid PeerSet; its last good state keeps serving");
                previous.get(&key).cloned().map(|t| (key, t))
            }
        }
    }
}
