//! Address leases for materialised identities, persisted in `--state-dir`.
//!
//! A lease is kept like a PersistentVolumeClaim: an ordinal keeps its address across restarts
//! and across scale-down and scale-up. It is released only when the StatefulSet's
//! `persistentVolumeClaimRetentionPolicy` says claims are deleted (`whenScaled: Delete` for
//! ordinals above the range, `whenDeleted: Delete` when the set is gone).
//!
//! The file is written atomically (temporary file, fsync, rename, fsync of the directory). A
//! file that cannot be parsed is reported, moved aside and rebuilt: never silently reused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cidr::Cidr;

const FILE_NAME: &str = "leases.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read lease file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write lease file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free address left in pod CIDR {cidr} for {namespace}/{set}-{ordinal}")]
    Exhausted {
        cidr: Cidr,
        namespace: String,
        set: String,
        ordinal: i32,
    },
}

/// The identity a lease belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseKey {
    pub namespace: String,
    pub set: String,
    pub ordinal: i32,
}

#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    #[serde(flatten)]
    key: LeaseKey,
    address: IpAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFile {
    version: u32,
    leases: Vec<LeaseRecord>,
    /// Sets whose leases go when the set is deleted (`whenDeleted: Delete`).
    #[serde(default)]
    release_when_deleted: Vec<(String, String)>,
}

/// In-memory leases, written back when they change.
pub struct LeaseStore {
    path: Option<PathBuf>,
    cidr: Cidr,
    leases: BTreeMap<LeaseKey, IpAddr>,
    used: BTreeSet<IpAddr>,
    /// Every host address of the CIDR before this index is in use: a new lease searches from
    /// here, so leasing n addresses in a row costs n steps, not n^2 / 2.
    free_from: u128,
    release_when_deleted: BTreeSet<(String, String)>,
    dirty: bool,
}

impl LeaseStore {
    /// Opens (or creates) the lease file in `dir`. Leases outside `cidr` are dropped with a
    /// warning (the CIDR changed); a corrupt file is moved aside and rebuilt.
    pub fn open(dir: &Path, cidr: Cidr) -> Result<Self, LeaseError> {
        fs::create_dir_all(dir).map_err(|source| LeaseError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let mut store = LeaseStore::in_memory(cidr);
        store.path = Some(path.clone());
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(LeaseError::Read { path, source }),
        };
        let parsed: Result<LeaseFile, String> = serde_json::from_str::<LeaseFile>(&text)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                if f.version == FORMAT_VERSION {
                    Ok(f)
                } else {
                    Err(format!("unknown format version {}", f.version))
                }
            });
        match parsed {
            Ok(file) => {
                for rec in file.leases {
                    if !store.cidr.contains(rec.address) || store.used.contains(&rec.address) {
                        warn!(namespace = %rec.key.namespace, set = %rec.key.set, ordinal = rec.key.ordinal,
                              address = %rec.address, cidr = %store.cidr,
                              "dropping a lease outside the pod CIDR (or duplicated); the identity gets a new address");
                        store.dirty = true;
                        continue;
                    }
                    store.used.insert(rec.address);
                    store.leases.insert(rec.key, rec.address);
                }
                store.release_when_deleted = file.release_when_deleted.into_iter().collect();
            }
            Err(reason) => {
                let aside = path.with_extension(format!("json.corrupt-{}", std::process::id()));
                warn!(file = %path.display(), %reason, moved_to = %aside.display(),
                      "lease file is corrupt: moving it aside and rebuilding; materialised identities get new addresses");
                if let Err(e) = fs::rename(&path, &aside) {
                    warn!(error = %e, "could not move the corrupt lease file aside");
                }
                store.dirty = true;
            }
        }
        info!(file = %path.display(), leases = store.leases.len(), "lease file loaded");
        Ok(store)
    }

    /// The leases in `dir` without ever writing (for `petdns check`): a missing or unreadable
    /// file gives an empty store.
    pub fn open_read_only(dir: &Path, cidr: Cidr) -> Self {
        let path = dir.join(FILE_NAME);
        let mut store = LeaseStore::in_memory(cidr);
        let Ok(text) = fs::read_to_string(&path) else {
            return store;
        };
        if let Ok(file) = serde_json::from_str::<LeaseFile>(&text) {
            for rec in file.leases.into_iter().filter(|r| cidr.contains(r.address)) {
                if store.used.insert(rec.address) {
                    store.leases.insert(rec.key, rec.address);
                }
            }
        }
        store
    }

    /// A store that is never written (for `petdns check` and tests).
    pub fn in_memory(cidr: Cidr) -> Self {
        LeaseStore {
            path: None,
            cidr,
            leases: BTreeMap::new(),
            used: BTreeSet::new(),
            free_from: 0,
            release_when_deleted: BTreeSet::new(),
            dirty: false,
        }
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The address of an identity, leasing the lowest free one on first use.
    pub fn lease(&mut self, key: &LeaseKey) -> Result<IpAddr, LeaseError> {
        if let Some(ip) = self.leases.get(key) {
            return Ok(*ip);
        }
        // Skipping on the hosts' range is O(1): the addresses before `free_from` are not visited.
        let mut index = self.free_from;
        let skip = usize::try_from(self.free_from).unwrap_or(usize::MAX);
        let found = self.cidr.hosts().skip(skip).find(|ip| {
            index += 1;
            !self.used.contains(ip)
        });
        let ip =
            found
                .inspect(|_| self.free_from = index)
                .ok_or_else(|| LeaseError::Exhausted {
                    cidr: self.cidr,
                    namespace: key.namespace.clone(),
                    set: key.set.clone(),
                    ordinal: key.ordinal,
                })?;
        self.used.insert(ip);
        self.leases.insert(key.clone(), ip);
        self.dirty = true;
        Ok(ip)
    }

    /// Applies the retention policies after a load: `sets` are the materialised sets that
    /// exist, with their declared range test and policy.
    pub fn retain(&mut self, sets: &[RetainedSet<'_>]) {
        let present: BTreeMap<(&str, &str), &RetainedSet<'_>> =
            sets.iter().map(|s| ((s.namespace, s.name), s)).collect();
        let mut wanted_release_when_deleted = self.release_when_deleted.clone();
        for s in sets {
            let key = (s.namespace.to_string(), s.name.to_string());
            if s.delete_when_deleted {
                wanted_release_when_deleted.insert(key);
            } else {
                wanted_release_when_deleted.remove(&key);
            }
        }
        let before = self.leases.len();
        let release_when_deleted = &wanted_release_when_deleted;
        self.leases.retain(
            |k, _| match present.get(&(k.namespace.as_str(), k.set.as_str())) {
                Some(s) => !s.delete_when_scaled || s.in_range(k.ordinal),
                None => !release_when_deleted.contains(&(k.namespace.clone(), k.set.clone())),
            },
        );
        wanted_release_when_deleted
            .retain(|(ns, set)| present.contains_key(&(ns.as_str(), set.as_str())));
        if self.leases.len() != before || wanted_release_when_deleted != self.release_when_deleted {
            self.used = self.leases.values().copied().collect();
            self.free_from = 0;
            self.release_when_deleted = wanted_release_when_deleted;
            self.dirty = true;
        }
    }

    /// Writes the file if anything changed since the last write.
    pub fn flush(&mut self) -> Result<(), LeaseError> {
        let Some(path) = self.path.clone() else {
            self.dirty = false;
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let file = LeaseFile {
            version: FORMAT_VERSION,
            leases: self
                .leases
                .iter()
                .map(|(k, a)| LeaseRecord {
                    key: k.clone(),
                    address: *a,
                })
                .collect(),
            release_when_deleted: self.release_when_deleted.iter().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| LeaseError::Write {
            path: path.clone(),
            source: e.into(),
        })?;
        write_atomically(&path, &bytes).map_err(|source| LeaseError::Write { path, source })?;
        self.dirty = false;
        Ok(())
    }
}

/// A materialised set as the retention rules see it.
pub struct RetainedSet<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub start: i32,
    pub replicas: i32,
    pub delete_when_scaled: bool,
    pub delete_when_deleted: bool,
}

impl RetainedSet<'_> {
    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && (ordinal as i64) < self.start as i64 + self.replicas as i64
    }
}

/// Write to a temporary file in the same directory, fsync it, rename it over `path`, fsync
/// the directory: a crash leaves the old file or the new one, never a torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(set: &str, ordinal: i32) -> LeaseKey {
        LeaseKey {
            namespace: "default".into(),
            set: set.into(),
            ordinal,
        }
    }

    #[test]
    fn leases_persist_and_survive_scale_down() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::open(dir.path(), cidr).unwrap();
        let a0 = store.lease(&key("web", 0)).unwrap();
        let a1 = store.lease(&key("web", 1)).unwrap();
        assert_eq!(a0.to_string(), "192.0.2.1");
        assert_eq!(a1.to_string(), "192.0.2.2");
        // Scale to 1 under the default Retain policy: web-1 keeps its lease.
        store.retain(&[RetainedSet {
            namespace: "default",
            name: "web",
            start: 0,
            replicas: 1,
            delete_when_scaled: false,
            delete_when_deleted: false,
        }]);
        store.flush().unwrap();
        let mut reopened = LeaseStore::open(dir.path(), cidr).unwrap();
        assert_eq!(reopened.lease(&key("web", 1)).unwrap(), a1);
        assert_eq!(
            reopened.lease(&key("web", 2)).unwrap().to_string(),
            "192.0.2.3"
        );
    }

    #[test]
    fn when_scaled_delete_releases_the_lease() {
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::in_memory(cidr);
        store.lease(&key("web", 0)).unwrap();
        store.lease(&key("web", 1)).unwrap();
        store.retain(&[RetainedSet {
            namespace: "default",
            name: "web",
            start: 0,
            replicas: 1,
            delete_when_scaled: true,
            delete_when_deleted: false,
        }]);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{ not json").unwrap();
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::open(dir.path(), cidr).unwrap();
        assert!(store.is_empty());
        store.lease(&key("web", 0)).unwrap();
        store.flush().unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().any(|n| n.contains("corrupt")), "{names:?}");
        assert!(LeaseStore::open(dir.path(), cidr).unwrap().len() == 1);
    }

    #[test]
    fn exhausted_cidr_is_an_error() {
        let cidr: Cidr = "192.0.2.0/30".parse().unwrap();
        let mut store = LeaseStore::in_memory(cidr);
        store.lease(&key("web", 0)).unwrap();
        store.lease(&key("web", 1)).unwrap();
        assert!(matches!(
            store.lease(&key("web", 2)),
            Err(LeaseError::Exhausted { .. })
        ));
    }
}
