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

/// A set's leases, (ordinal, host index), sorted by ordinal.
type SetLeases = Vec<(i32, u32)>;

/// In-memory leases, written back when they change. Addresses are kept as host indexes in the
/// CIDR ([`Cidr::host_index`], the first 2^32 hosts: a store leases the lowest free ones), so
/// a lease is 12 bytes: (ordinal, host) in its set's list sorted by ordinal, and the host in
/// one sorted list of all, to find free ones. Strings are per namespace and per set.
pub struct LeaseStore {
    path: Option<PathBuf>,
    cidr: Cidr,
    /// Namespace, then set, to its leases sorted by ordinal.
    sets: BTreeMap<Box<str>, BTreeMap<Box<str>, SetLeases>>,
    /// Every leased host, sorted.
    used: Vec<u32>,
    count: usize,
    /// Every host of the CIDR before this index is in use: a new lease searches from here, so
    /// leasing n addresses in a row costs n steps, not n^2 / 2.
    free_from: u32,
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
                if store.load(file.leases, true) {
                    store.dirty = true;
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
        info!(file = %path.display(), leases = store.count, "lease file loaded");
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
            store.load(file.leases, false);
        }
        store
    }

    /// A store that is never written (for `petdns check` and tests).
    pub fn in_memory(cidr: Cidr) -> Self {
        LeaseStore {
            path: None,
            cidr,
            sets: BTreeMap::new(),
            used: Vec::new(),
            count: 0,
            free_from: 0,
            release_when_deleted: BTreeSet::new(),
            dirty: false,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes the leases of a file; returns whether any were dropped: outside the CIDR, or an
    /// address or identity leased twice (the first in the file wins). Sorting, not inserting
    /// one by one, keeps loading n leases at n log n.
    fn load(&mut self, records: Vec<LeaseRecord>, log: bool) -> bool {
        let cidr = self.cidr;
        let drop = |r: &LeaseRecord| {
            if log {
                warn!(namespace = %r.key.namespace, set = %r.key.set, ordinal = r.key.ordinal,
                      address = %r.address, %cidr,
                      "dropping a lease outside the pod CIDR (or duplicated); the identity gets a new address");
            }
        };
        let total = records.len();
        // Each record with its host and its place in the file, so the first of equals wins.
        let mut records: Vec<(u32, usize, LeaseRecord)> = records
            .into_iter()
            .enumerate()
            .filter_map(|(at, r)| match self.host_of(r.address) {
                Some(host) => Some((host, at, r)),
                None => {
                    drop(&r);
                    None
                }
            })
            .collect();
        records.sort_by_key(|(host, at, _)| (*host, *at));
        records.dedup_by(|(later, _, r), (first, _, _)| {
            let twice = later == first;
            if twice {
                drop(r);
            }
            twice
        });
        records.sort_by(|(_, a_at, a), (_, b_at, b)| a.key.cmp(&b.key).then(a_at.cmp(b_at)));
        records.dedup_by(|(_, _, later), (_, _, first)| {
            let twice = later.key == first.key;
            if twice {
                drop(later);
            }
            twice
        });
        for (host, _, r) in &records {
            self.set_mut(&r.key.namespace, &r.key.set)
                .push((r.key.ordinal, *host));
        }
        self.used = records.iter().map(|(host, _, _)| *host).collect();
        self.used.sort_unstable();
        self.count = records.len();
        self.count != total
    }

    /// The host index of a leasable address of the CIDR.
    fn host_of(&self, ip: IpAddr) -> Option<u32> {
        self.cidr.host_index(ip).and_then(|h| u32::try_from(h).ok())
    }

    fn address(&self, host: u32) -> IpAddr {
        self.cidr
            .host(u128::from(host))
            .expect("leased hosts are in the CIDR")
    }

    /// The leases of a set, created empty when it has none.
    fn set_mut(&mut self, namespace: &str, set: &str) -> &mut SetLeases {
        // Looked up before inserting, so a lease allocates no key when its set has one.
        if !self.sets.contains_key(namespace) {
            self.sets.insert(namespace.into(), BTreeMap::new());
        }
        let sets = self.sets.get_mut(namespace).expect("inserted above");
        if !sets.contains_key(set) {
            sets.insert(set.into(), Vec::new());
        }
        sets.get_mut(set).expect("inserted above")
    }

    /// The address of identity `<set>-<ordinal>` in `namespace`, leasing the lowest free one
    /// on first use.
    pub fn lease(
        &mut self,
        namespace: &str,
        set: &str,
        ordinal: i32,
    ) -> Result<IpAddr, LeaseError> {
        if let Some(leases) = self.sets.get(namespace).and_then(|s| s.get(set))
            && let Ok(i) = leases.binary_search_by_key(&ordinal, |(o, _)| *o)
        {
            return Ok(self.address(leases[i].1));
        }
        let mut host = self.free_from;
        // `used` is sorted: walk it from the first host at or after the cursor.
        let mut taken = self.used[self.used.partition_point(|u| *u < host)..].iter();
        while taken.next() == Some(&host) {
            host = host.wrapping_add(1);
        }
        let exhausted = || LeaseError::Exhausted {
            cidr: self.cidr,
            namespace: namespace.into(),
            set: set.into(),
            ordinal,
        };
        if host == u32::MAX || host < self.free_from {
            return Err(exhausted());
        }
        let ip = self.cidr.host(u128::from(host)).ok_or_else(exhausted)?;
        self.free_from = host + 1;
        let leases = self.set_mut(namespace, set);
        let at = leases.partition_point(|(o, _)| *o < ordinal);
        leases.insert(at, (ordinal, host));
        // Leased from a cursor that only moves up, the host usually goes last.
        let at = self.used.partition_point(|u| *u < host);
        self.used.insert(at, host);
        self.count += 1;
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
        let before = self.count;
        let release_when_deleted = &wanted_release_when_deleted;
        for (ns, sets) in self.sets.iter_mut() {
            for (name, leases) in sets.iter_mut() {
                match present.get(&(&**ns, &**name)) {
                    Some(s) if s.delete_when_scaled => leases.retain(|(o, _)| s.in_range(*o)),
                    Some(_) => {}
                    None => {
                        if release_when_deleted.contains(&(ns.to_string(), name.to_string())) {
                            leases.clear();
                        }
                    }
                }
            }
            sets.retain(|_, leases| !leases.is_empty());
        }
        self.sets.retain(|_, sets| !sets.is_empty());
        self.count = self
            .sets
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum();
        wanted_release_when_deleted
            .retain(|(ns, set)| present.contains_key(&(ns.as_str(), set.as_str())));
        if self.count != before || wanted_release_when_deleted != self.release_when_deleted {
            self.used = self
                .sets
                .values()
                .flat_map(|s| s.values())
                .flatten()
                .map(|(_, host)| *host)
                .collect();
            self.used.sort_unstable();
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
        let this = &*self;
        let file = LeaseFile {
            version: FORMAT_VERSION,
            leases: this
                .sets
                .iter()
                .flat_map(|(ns, sets)| {
                    sets.iter().flat_map(move |(set, leases)| {
                        leases.iter().map(move |(ordinal, host)| LeaseRecord {
                            key: LeaseKey {
                                namespace: ns.to_string(),
                                set: set.to_string(),
                                ordinal: *ordinal,
                            },
                            address: this.address(*host),
                        })
                    })
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

    #[test]
    fn leases_persist_and_survive_scale_down() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::open(dir.path(), cidr).unwrap();
        let a0 = store.lease("default", "web", 0).unwrap();
        let a1 = store.lease("default", "web", 1).unwrap();
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
        assert_eq!(reopened.lease("default", "web", 1).unwrap(), a1);
        assert_eq!(
            reopened.lease("default", "web", 2).unwrap().to_string(),
            "192.0.2.3"
        );
    }

    #[test]
    fn when_scaled_delete_releases_the_lease() {
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::in_memory(cidr);
        store.lease("default", "web", 0).unwrap();
        store.lease("default", "web", 1).unwrap();
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
        store.lease("default", "web", 0).unwrap();
        store.flush().unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().any(|n| n.contains("corrupt")), "{names:?}");
        assert!(LeaseStore::open(dir.path(), cidr).unwrap().len() == 1);
    }

    #[test]
    fn a_file_with_duplicates_keeps_the_first_of_each() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |set: &str, ordinal: i32, address: &str| serde_json::json!({"namespace": "default", "set": set, "ordinal": ordinal, "address": address});
        let file = serde_json::json!({"version": FORMAT_VERSION, "leases": [
            rec("web", 1, "192.0.2.9"),
            rec("web", 0, "192.0.2.5"),
            rec("db", 0, "192.0.2.5"),   // address taken: dropped
            rec("web", 1, "192.0.2.7"),  // identity taken: dropped
            rec("db", 1, "198.51.100.1"), // outside the CIDR: dropped
            rec("db", 2, "192.0.2.1"),
        ]});
        fs::write(dir.path().join(FILE_NAME), file.to_string()).unwrap();
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut store = LeaseStore::open(dir.path(), cidr).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.lease("default", "web", 1).unwrap().to_string(),
            "192.0.2.9"
        );
        assert_eq!(
            store.lease("default", "web", 0).unwrap().to_string(),
            "192.0.2.5"
        );
        assert_eq!(
            store.lease("default", "db", 2).unwrap().to_string(),
            "192.0.2.1"
        );
        // New leases take the lowest free addresses, around the loaded ones.
        assert_eq!(
            store.lease("default", "db", 0).unwrap().to_string(),
            "192.0.2.2"
        );
        assert_eq!(
            store.lease("default", "db", 1).unwrap().to_string(),
            "192.0.2.3"
        );
        assert!(store.dirty);
    }

    #[test]
    fn exhausted_cidr_is_an_error() {
        let cidr: Cidr = "192.0.2.0/30".parse().unwrap();
        let mut store = LeaseStore::in_memory(cidr);
        store.lease("default", "web", 0).unwrap();
        store.lease("default", "web", 1).unwrap();
        assert!(matches!(
            store.lease("default", "web", 2),
            Err(LeaseError::Exhausted { .. })
        ));
    }
}
