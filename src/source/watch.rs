//! The manifest source: load, publish, then reload on every change of the watched files.
//!
//! Directories are watched rather than files, so editors that save by writing a new file and
//! renaming it over the old one (vim, VS Code) and ConfigMap volumes (a `..data` symlink swap)
//! are seen. Bursts of events are debounced into one reload.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Publish;
use super::embedded;
use super::leases::LeaseStore;
use super::manifests::{self, ManifestError};
use crate::identity::{ConditionStatus, IdentityTable, SrvPriority};

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Reload at the latest this long after the first event of a burst.
const MAX_DELAY: Duration = Duration::from_millis(400);

/// Manifests on disk as a record source.
pub struct ManifestSource<P: Publish> {
    paths: Vec<PathBuf>,
    leases: LeaseStore,
    srv_default: SrvPriority,
    publish: P,
    /// A digest of the last tables and namespaces published, to skip publishing the same again
    /// (the tables themselves live once, in the index).
    last: Option<u64>,
    /// The False conditions (type, reason) of each table last published, to log only
    /// changes; tables with none are not kept (most of them, at a few hundred bytes each).
    last_conditions: HashMap<(String, String), Vec<(String, String)>>,
    /// The errors of the last rejected load, so one bad save is reported once.
    last_rejected: Option<Vec<ManifestError>>,
}

/// Run on the load thread after each reload, before it ends; set once by the binary, which
/// owns the allocator (`main.rs` hands the allocator's free pages back to the system here).
static AFTER_LOAD: OnceLock<fn()> = OnceLock::new();

/// Sets the hook run after each manifest reload and each full publish of the PeerSet
/// source; only the first call counts.
pub fn set_after_load(hook: fn()) {
    let _ = AFTER_LOAD.set(hook);
}

/// Runs the hook of [`set_after_load`], if one is set.
pub(super) fn after_load() {
    if let Some(hook) = AFTER_LOAD.get() {
        hook();
    }
}

impl<P: Publish> ManifestSource<P> {
    /// `srv_default` applies to Services without a `petdns.io/srv-priority` annotation.
    pub fn new(
        paths: Vec<PathBuf>,
        leases: LeaseStore,
        srv_default: SrvPriority,
        publish: P,
    ) -> Self {
        ManifestSource {
            paths,
            leases,
            srv_default,
            publish,
            last: None,
            last_conditions: HashMap::new(),
            last_rejected: None,
        }
    }

    /// Loads once; returns true when the load was accepted.
    pub fn reload(&mut self) -> bool {
        let started = Instant::now();
        let objects = match manifests::load(&self.paths) {
            Ok(o) => {
                self.last_rejected = None;
                o
            }
            Err(errors) => {
                // The same failure again (one save seen as two events): said once already.
                if self.last_rejected.as_ref() == Some(&errors) {
                    debug!(errors = errors.len(), "manifests still invalid, unchanged");
                    return false;
                }
                for e in &errors {
                    error!(file = %e.file.display(), line = e.line, reason = %e.reason, "manifest rejected; the last good state keeps serving");
                }
                self.publish.rejected();
                self.last_rejected = Some(errors);
                return false;
            }
        };
        let tables = match embedded::tables(&objects, &mut self.leases, self.srv_default) {
            Ok(t) => t,
            Err(e) => {
                let err = ManifestError {
                    file: self.paths.first().cloned().unwrap_or_default(),
                    line: 0,
                    reason: e.to_string(),
                };
                error!(reason = %err.reason, "manifests rejected; the last good state keeps serving");
                self.publish.rejected();
                return false;
            }
        };
        if let Err(e) = self.leases.flush() {
            error!(error = %e, "could not persist address leases; addresses may change after a restart");
            self.publish.lease_write_failed(&e);
        }
        log_condition_changes(&self.last_conditions, &tables);
        self.last_conditions = tables
            .iter()
            .filter_map(|t| {
                let failed: Vec<(String, String)> = t
                    .conditions
                    .iter()
                    .filter(|c| c.status == ConditionStatus::False)
                    .map(|c| (c.type_.clone(), c.reason.clone()))
                    .collect();
                let key = (t.namespace.clone(), t.stateful_set.clone());
                (!failed.is_empty()).then_some((key, failed))
            })
            .collect();
        let namespaces = objects.all_namespaces();
        drop(objects);
        let identities: usize = tables.iter().map(|t| t.identities.len()).sum();
        let published: usize = tables.iter().map(|t| t.published()).sum();
        let digest = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&tables, &namespaces).hash(&mut h);
            h.finish()
        };
        if self.last == Some(digest) {
            info!(
                statefulsets = tables.len(),
                identities,
                published,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "manifests reloaded, nothing changed"
            );
            return true;
        }
        info!(
            statefulsets = tables.len(),
            identities,
            published,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "manifests loaded"
        );
        self.last = Some(digest);
        self.publish.loaded(tables, namespaces);
        true
    }

    /// [`Self::reload`] on a thread of its own that ends with it: parsing a large manifest set
    /// allocates many times what the result keeps, and the allocator returns a thread's free
    /// memory to the system when the thread ends (a pooled thread would hold it for seconds).
    fn reload_on_own_thread(&mut self) -> bool {
        tokio::task::block_in_place(|| {
            let spawned = std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("manifest-load".into())
                    .spawn_scoped(scope, || {
                        let ok = self.reload();
                        after_load();
                        ok
                    })
                    .map(|t| t.join().unwrap_or(false))
                    .ok()
            });
            // No thread to be had: load here.
            spawned.unwrap_or_else(|| self.reload())
        })
    }

    /// Watches the paths and reloads on change until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let changed = Arc::new(Notify::new());
        // Watch first, then load: an edit made while loading is not missed.
        let _watcher = watch(&self.paths, changed.clone())?;
        if !self.reload_on_own_thread() {
            warn!(
                "the manifests are invalid: answering SERVFAIL and not ready until they are fixed"
            );
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = changed.notified() => {}
            }
            // Debounce: wait for a quiet moment, but not forever.
            let first = Instant::now();
            loop {
                let left = MAX_DELAY.saturating_sub(first.elapsed());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = changed.notified(), if !left.is_zero() => continue,
                    _ = tokio::time::sleep(DEBOUNCE.min(left)) => break,
                }
            }
            self.reload_on_own_thread();
        }
    }
}

/// Starts watching; every relevant event wakes `changed`.
fn watch(paths: &[PathBuf], changed: Arc<Notify>) -> anyhow::Result<RecommendedWatcher> {
    // (directory to watch, file inside it to filter on; None for a whole directory)
    let mut targets: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p)?;
        if abs.is_dir() {
            targets.push((abs, None));
        } else {
            let dir = abs
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            targets.push((dir, Some(abs)));
        }
    }
    let filters = targets.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            filters.iter().any(|(dir, file)| match file {
                // A whole directory: any entry, including `..data` symlink swaps.
                None => p.parent() == Some(dir.as_path()),
                Some(f) => {
                    p == f
                        || (p.parent() == Some(dir.as_path())
                            && p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("..")))
                }
            })
        });
        if relevant {
            changed.notify_one();
        }
    })?;
    let dirs: BTreeSet<PathBuf> = targets.into_iter().map(|(d, _)| d).collect();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// One log line per condition that changed since the last accepted load (not one per reload).
fn log_condition_changes(
    before: &HashMap<(String, String), Vec<(String, String)>>,
    after: &[IdentityTable],
) {
    for t in after {
        let old = before.get(&(t.namespace.clone(), t.stateful_set.clone()));
        for c in &t.conditions {
            let failed = old.and_then(|o| o.iter().find(|(type_, _)| *type_ == c.type_));
            if c.status == ConditionStatus::False {
                if failed.is_none_or(|(_, reason)| *reason != c.reason) {
                    warn!(namespace = %t.namespace, statefulset = %t.stateful_set, condition = %c.type_, reason = %c.reason, detail = %c.message, "condition changed: some identities get no DNS records");
                }
            } else if failed.is_some() {
                info!(namespace = %t.namespace, statefulset = %t.stateful_set, condition = %c.type_, reason = %c.reason, "condition changed: resolved");
            }
        }
    }
}
