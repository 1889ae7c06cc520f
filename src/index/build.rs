//! Building a [`Snapshot`] from identity tables (compute on write).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use tracing::warn;

use super::chunks::Chunks;
use super::service::{Interner, PtrTarget, ServiceData, SetData, service_key, split_key};
use super::snapshot::{
    CoreName, FastName, FastZone, NameEntry, RrSet, Snapshot, SnapshotStats, Zone, key_hash,
    v4_key, v6_key,
};
use super::wire;
use crate::identity::{IdentityState, IdentityTable};

/// The CoreDNS-compatible schema version answered at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";
const DNS_VERSION_TTL: u32 = 28800;

/// What the index needs besides the tables.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// The cluster zone, e.g. `cluster.local.` (fully qualified, lower case).
    pub zone: Name,
    pub ttl: u32,
    pub negative_ttl: u32,
    /// Addresses answered for `ns.dns.<zone>`.
    pub ns_addresses: Vec<IpAddr>,
}

/// Builds the snapshot for `tables` in one go (`explain`, tests, benchmarks).
pub fn build(
    tables: &[IdentityTable],
    namespaces: &BTreeSet<String>,
    cfg: &IndexConfig,
    generation: u64,
    serial: u32,
) -> Snapshot {
    let mut indexer = Indexer::new(cfg.clone());
    indexer.load(tables.to_vec(), namespaces.clone());
    indexer.snapshot(generation, serial)
}

/// An empty, not-yet-loaded snapshot: every in-zone question gets SERVFAIL.
pub fn placeholder(cfg: &IndexConfig) -> Snapshot {
    let mut snap = Indexer::new(cfg.clone()).snapshot(0, 0);
    snap.loaded = false;
    snap
}

/// A table by namespace and StatefulSet, as sources name them.
type TableKey = (String, String);

/// A table inside the index: `<namespace>/<set>` (no Kubernetes name holds a `/`).
fn table_id(ns: &str, set: &str) -> Arc<str> {
    Arc::from(format!("{ns}/{set}"))
}

/// A map kept as one sorted vector: a few bytes per entry over the entries themselves, where a
/// hash map leaves a third of its slots empty. Fine for the index's bookkeeping, which changes
/// an entry or two at a time after a load built it whole.
#[derive(Debug)]
struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord + std::borrow::Borrow<str>, V> VecMap<K, V> {
    /// From entries in any order; of equal keys the last one is kept.
    fn from_vec(mut v: Vec<(K, V)>) -> Self {
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v.shrink_to_fit();
        VecMap(v)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    fn get_key_value(&self, key: &str) -> Option<(&K, &V)> {
        self.find(key).ok().map(|i| (&self.0[i].0, &self.0[i].1))
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    fn insert(&mut self, key: K, value: V) {
        match self.find(key.borrow()) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.0.iter()
    }
}

/// What the index keeps of one table: where it publishes, its compact data, its counts.
#[derive(Debug, PartialEq, Eq)]
struct TableEntry {
    /// The Service it publishes under, by its key `<svc>.<ns>` (shared with its sets' data).
    group: Option<Arc<str>>,
    set: Option<Arc<SetData>>,
    states: [u32; IdentityState::ALL.len()],
}

/// Keeps the tables and the snapshot's parts between changes, so that a change rebuilds only
/// the Services it touches and a new snapshot shares everything else with the previous one.
pub struct Indexer {
    cfg: IndexConfig,
    /// Room for the labels of a name below the cluster zone (255 minus the zone's length).
    name_room: usize,
    /// Per table (by id): what the index keeps of it (not the table itself).
    tables: VecMap<Arc<str>, TableEntry>,
    /// A Service (by key) to the tables it governs (by id), in order.
    groups: VecMap<Arc<str>, Vec<Arc<str>>>,
    namespaces: BTreeSet<String>,
    core: Arc<HashMap<Box<[u8]>, CoreName>>,
    core_counts: (usize, usize),
    services: Chunks<u64, Arc<ServiceData>>,
    service_namespaces: Chunks<u64, (Arc<str>, u32)>,
    v4: Chunks<u32, PtrTarget>,
    v6: Chunks<u128, PtrTarget>,
    interner: Interner,
    service_counts: (usize, usize),
    states: [u32; IdentityState::ALL.len()],
}

impl Indexer {
    pub fn new(cfg: IndexConfig) -> Indexer {
        let zone_len = wire::wire_name(&cfg.zone).len();
        let mut indexer = Indexer {
            name_room: 255usize.saturating_sub(zone_len),
            cfg,
            tables: VecMap::default(),
            groups: VecMap::default(),
            namespaces: BTreeSet::new(),
            core: Arc::default(),
            core_counts: (0, 0),
            services: Chunks::default(),
            service_namespaces: Chunks::default(),
            v4: Chunks::default(),
            v6: Chunks::default(),
            interner: Interner::default(),
            service_counts: (0, 0),
            states: [0; IdentityState::ALL.len()],
        };
        indexer.rebuild_core();
        indexer
    }

    /// All the tables, replacing the previous ones; only the Services whose tables differ
    /// are rebuilt.
    pub fn load(&mut self, tables: Vec<IdentityTable>, namespaces: BTreeSet<String>) {
        // The new bookkeeping is built whole, then compared with the old entry by entry.
        let fresh: Vec<(Arc<str>, TableEntry)> = tables
            .iter()
            .map(|t| (table_id(&t.namespace, &t.stateful_set), self.entry(t)))
            .collect();
        drop(tables);
        let fresh = VecMap::from_vec(fresh);
        let old = std::mem::replace(&mut self.tables, fresh);
        let mut affected = BTreeSet::new();
        for (id, entry) in old.iter() {
            if self.tables.get(id) != Some(entry)
                && let Some(g) = &entry.group
            {
                affected.insert(g.clone());
            }
        }
        for (id, entry) in self.tables.iter() {
            if old.get(id) != Some(entry)
                && let Some(g) = &entry.group
            {
                affected.insert(g.clone());
            }
        }
        drop(old);
        let mut members: Vec<(Arc<str>, Arc<str>)> = self
            .tables
            .iter()
            .filter_map(|(id, e)| Some((e.group.clone()?, id.clone())))
            .collect();
        members.sort();
        let mut groups: Vec<(Arc<str>, Vec<Arc<str>>)> = Vec::new();
        for (g, id) in members {
            match groups.last_mut() {
                Some((last, ids)) if *last == g => ids.push(id),
                _ => groups.push((g, vec![id])),
            }
        }
        self.groups = VecMap::from_vec(groups);
        self.states = [0; IdentityState::ALL.len()];
        for (_, e) in self.tables.iter() {
            for (total, n) in self.states.iter_mut().zip(e.states) {
                *total += n;
            }
        }
        self.finish(affected, Some(namespaces));
    }

    /// Some tables changed (`upserts`) or went away (`removed`, by namespace and set). The
    /// namespaces of the upserts are added to the existing ones (a namespace left empty stays
    /// until the next [`Indexer::load`]).
    pub fn apply(&mut self, upserts: Vec<IdentityTable>, removed: Vec<TableKey>) {
        let mut namespaces = None::<BTreeSet<String>>;
        for t in &upserts {
            if !self.namespaces.contains(&t.namespace) {
                namespaces
                    .get_or_insert_with(|| self.namespaces.clone())
                    .insert(t.namespace.clone());
            }
        }
        let mut affected = BTreeSet::new();
        for (ns, set) in removed {
            self.change(table_id(&ns, &set), None, &mut affected);
        }
        for t in upserts {
            let id = table_id(&t.namespace, &t.stateful_set);
            self.change(id, Some(t), &mut affected);
        }
        self.finish(affected, namespaces);
    }

    /// A snapshot of the current state.
    pub fn snapshot(&self, generation: u64, serial: u32) -> Snapshot {
        let mut b = Builder::new(&self.cfg, serial);
        b.apex_records_only();
        let apex = b.finish();
        let mut apexes: Vec<CoreName> = Vec::with_capacity(apex.zones.len());
        let mut apex_map = apex.core;
        for z in &apex.fast_zones {
            apexes.push(apex_map.remove(&z.wire).unwrap_or_default());
        }
        let by_state = self.states;
        // Reverse names (an address shared by two identities is one name with two PTRs).
        let ptr_records = self.v4.len() + self.v6.len();
        Snapshot {
            generation,
            serial,
            loaded: true,
            zones: apex.zones,
            fast_zones: apex.fast_zones,
            apexes,
            core: self.core.clone(),
            services: self.services.clone(),
            service_namespaces: self.service_namespaces.clone(),
            v4: self.v4.clone(),
            v6: self.v6.clone(),
            ttl: self.cfg.ttl,
            stats: SnapshotStats {
                names: self.core_counts.0 + self.service_counts.0 + ptr_records,
                records: self.core_counts.1 + self.service_counts.1 + ptr_records,
                tables: self.tables.len(),
                identities_by_state: IdentityState::ALL
                    .iter()
                    .zip(by_state)
                    .map(|(s, n)| (*s, n as usize))
                    .collect(),
            },
        }
    }

    /// What the index keeps of a table. Its Service key is shared with the Service's other
    /// tables when one of them has it already.
    fn entry(&mut self, t: &IdentityTable) -> TableEntry {
        let resolved = t.service_resolved() && !t.service.is_empty();
        let group = resolved.then(|| {
            let key = service_key(&t.service, &t.namespace);
            match self.groups.get_key_value(&key) {
                Some((k, _)) => k.clone(),
                None => Arc::from(key),
            }
        });
        let set = group
            .as_ref()
            .and_then(|g| {
                SetData::build(
                    t,
                    &t.namespace,
                    &t.service,
                    g,
                    self.name_room,
                    &mut self.interner,
                )
            })
            .map(Arc::new);
        let mut states = [0; IdentityState::ALL.len()];
        count_states(t, &mut states);
        TableEntry { group, set, states }
    }

    fn change(
        &mut self,
        id: Arc<str>,
        new: Option<IdentityTable>,
        affected: &mut BTreeSet<Arc<str>>,
    ) {
        let new = new.map(|t| self.entry(&t));
        // Conditions, node names and the like do not change an answer: nothing to rebuild.
        if self.tables.get(&id) == new.as_ref() {
            return;
        }
        if let Some(old) = self.tables.remove(&id) {
            for (total, n) in self.states.iter_mut().zip(old.states) {
                *total = total.saturating_sub(n);
            }
            if let Some(g) = old.group {
                if let Some(ids) = self.groups.get_mut(&g) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.groups.remove(&g);
                    }
                }
                affected.insert(g);
            }
        }
        if let Some(new) = new {
            for (total, n) in self.states.iter_mut().zip(new.states) {
                *total += n;
            }
            if let Some(g) = &new.group {
                match self.groups.get_mut(g) {
                    Some(ids) => {
                        if let Err(at) = ids.binary_search(&id) {
                            ids.insert(at, id.clone());
                        }
                    }
                    None => self.groups.insert(g.clone(), vec![id.clone()]),
                }
                affected.insert(g.clone());
            }
            self.tables.insert(id, new);
        }
    }

    /// Rebuilds the `affected` Services, and the fixed names if `namespaces` changed.
    fn finish(&mut self, affected: BTreeSet<Arc<str>>, namespaces: Option<BTreeSet<String>>) {
        if self.services.is_empty() && affected.len() > 1 {
            self.build_all(&affected);
        } else {
            for g in &affected {
                self.rebuild_service(g);
            }
        }
        if let Some(namespaces) = namespaces
            && namespaces != self.namespaces
        {
            self.namespaces = namespaces;
            self.rebuild_core();
        }
    }

    /// The sets of Service `key`, in table order.
    fn sets_of(&self, key: &str) -> Vec<Arc<SetData>> {
        self.groups
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tables.get(id)?.set.clone())
            .collect()
    }

    /// The first load: every Service built, then each map sorted once.
    fn build_all(&mut self, groups: &BTreeSet<Arc<str>>) {
        let mut services = Vec::new();
        let mut namespaces: HashMap<Arc<str>, u32> = HashMap::new();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for g in groups {
            let sets = self.sets_of(g);
            if sets.is_empty() {
                continue;
            }
            let (svc, ns) = split_key(g);
            let Some(data) = ServiceData::build(ns, svc, sets) else {
                continue;
            };
            for (ip, target) in data.ptrs() {
                match ip {
                    IpAddr::V4(a) => v4.push((v4_key(a), target)),
                    IpAddr::V6(a) => v6.push((v6_key(a), target)),
                }
            }
            let (names, records) = data.counts();
            self.service_counts.0 += names;
            self.service_counts.1 += records;
            *namespaces.entry(Arc::from(data.namespace())).or_default() += 1;
            services.push((key_hash(data.key()), Arc::new(data)));
        }
        self.services = Chunks::from_vec(services);
        self.service_namespaces = Chunks::from_vec(
            namespaces
                .into_iter()
                .map(|(ns, n)| (key_hash(&ns), (ns, n)))
                .collect(),
        );
        self.v4 = Chunks::from_vec(v4);
        self.v6 = Chunks::from_vec(v6);
    }

    fn rebuild_service(&mut self, key: &Arc<str>) {
        let (svc, ns) = split_key(key);
        let hash = key_hash(key);
        let old = self
            .services
            .get_all(&hash)
            .find(|d| **d.key() == **key)
            .cloned();
        if let Some(old) = old {
            self.services.remove_where(&hash, |d| **d.key() == **key);
            for (ip, _) in old.ptrs() {
                match ip {
                    IpAddr::V4(a) => self.v4.remove_where(&v4_key(a), |t| t.service() == &**key),
                    IpAddr::V6(a) => self.v6.remove_where(&v6_key(a), |t| t.service() == &**key),
                };
            }
            let (names, records) = old.counts();
            self.service_counts.0 -= names;
            self.service_counts.1 -= records;
            self.count_namespace(old.namespace(), -1);
        }
        let sets = self.sets_of(key);
        if sets.is_empty() {
            return;
        }
        let Some(data) = ServiceData::build(ns, svc, sets) else {
            return;
        };
        for (ip, target) in data.ptrs() {
            match ip {
                IpAddr::V4(a) => self.v4.insert(v4_key(a), target),
                IpAddr::V6(a) => self.v6.insert(v6_key(a), target),
            }
        }
        let (names, records) = data.counts();
        self.service_counts.0 += names;
        self.service_counts.1 += records;
        self.count_namespace(data.namespace(), 1);
        self.services.insert(hash, Arc::new(data));
    }

    /// One more (`delta` 1) or one fewer (-1) Service in namespace `ns`.
    fn count_namespace(&mut self, ns: &str, delta: i32) {
        let hash = key_hash(ns);
        let n = self
            .service_namespaces
            .get_all(&hash)
            .find(|(name, _)| **name == *ns)
            .map_or(0, |(_, n)| *n);
        self.service_namespaces
            .remove_where(&hash, |(name, _)| **name == *ns);
        let n = n.saturating_add_signed(delta);
        if n > 0 {
            self.service_namespaces.insert(hash, (Arc::from(ns), n));
        }
    }

    fn rebuild_core(&mut self) {
        let mut b = Builder::new(&self.cfg, 0);
        b.apex_records();
        for ns in &self.namespaces {
            if let Some(n) = b.name(&[ns, "svc"]) {
                b.exists(&n);
            }
            if let Some(n) = b.name(&[ns, "pod"]) {
                b.exists(&n);
            }
        }
        let mut core = b.finish();
        // The apexes carry the serial and are made with each snapshot.
        for z in &core.fast_zones {
            core.core.remove(&z.wire);
        }
        self.core_counts = (core.names, core.records);
        self.core = Arc::new(core.core);
    }
}

/// The `(namespace, service)` a table's identities are published under, if any.
fn count_states(t: &IdentityTable, states: &mut [u32; IdentityState::ALL.len()]) {
    for i in &t.identities {
        if let Some(k) = IdentityState::ALL.iter().position(|s| *s == i.state) {
            states[k] += 1;
        }
    }
}

type Key = (LowerName, RecordType);

/// One record set under construction. Records are de-duplicated through hash sets: a linear
/// `contains` made a 10,000-identity build quadratic (minutes instead of milliseconds).
struct SetBuilder {
    owner: Name,
    answers: Vec<Record>,
    /// The answers' data; every answer has the set's owner, so the data alone identifies one.
    seen: HashSet<RData>,
    additionals: Vec<Record>,
    seen_glue: HashSet<(LowerName, RData)>,
}

struct Builder<'a> {
    cfg: &'a IndexConfig,
    zones: Vec<Zone>,
    /// Record sets under construction, de-duplicated by record.
    sets: HashMap<Key, SetBuilder>,
    names: HashMap<LowerName, Name>,
}

impl<'a> Builder<'a> {
    fn new(cfg: &'a IndexConfig, serial: u32) -> Self {
        let origins = [
            cfg.zone.clone(),
            Name::from_ascii("in-addr.arpa.").expect("static name"),
            Name::from_ascii("ip6.arpa.").expect("static name"),
        ];
        let zones = origins
            .iter()
            .map(|o| Zone {
                origin: LowerName::new(o),
                num_labels: o.num_labels() as usize,
                soa: soa_record(o, &cfg.zone, serial, cfg.negative_ttl),
            })
            .collect();
        Builder {
            cfg,
            zones,
            sets: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// `<labels...>.<zone>`; `None` (and a warning) when a label is not a valid DNS label.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut text = labels.join(".");
        text.push('.');
        let rel = match Name::from_ascii(&text) {
            Ok(n) if labels.iter().all(|l| !l.is_empty() && l.len() <= 63) => n,
            _ => {
                warn!(name = %text, "skipping a name that is not valid in DNS");
                return None;
            }
        };
        match rel.append_domain(&self.cfg.zone) {
            Ok(n) => Some(n.to_lowercase()),
            Err(e) => {
                warn!(name = %text, error = %e, "skipping a name that is too long for DNS");
                None
            }
        }
    }

    fn exists(&mut self, name: &Name) {
        self.names
            .entry(LowerName::new(name))
            .or_insert_with(|| name.clone());
    }

    fn add(&mut self, name: &Name, rdata: RData, ttl: u32) {
        self.exists(name);
        let rtype = rdata.record_type();
        let record = Record::from_rdata(name.clone(), ttl, rdata);
        let set = self
            .sets
            .entry((LowerName::new(name), rtype))
            .or_insert_with(|| SetBuilder {
                owner: name.clone(),
                answers: Vec::new(),
                seen: HashSet::new(),
                additionals: Vec::new(),
                seen_glue: HashSet::new(),
            });
        if set.seen.insert(record.data.clone()) {
            set.answers.push(record);
        }
    }

    fn add_glue(&mut self, name: &Name, rtype: RecordType, glue: Vec<Record>) {
        if let Some(set) = self.sets.get_mut(&(LowerName::new(name), rtype)) {
            for g in glue {
                if set
                    .seen_glue
                    .insert((LowerName::new(&g.name), g.data.clone()))
                {
                    set.additionals.push(g);
                }
            }
        }
    }

    fn address_records(&self, name: &Name, addresses: &[IpAddr]) -> Vec<Record> {
        addresses
            .iter()
            .map(|ip| Record::from_rdata(name.clone(), self.cfg.ttl, address_rdata(*ip)))
            .collect()
    }

    fn ns_name(&self) -> Name {
        Name::from_ascii("ns.dns.")
            .and_then(|n| n.append_domain(&self.cfg.zone))
            .expect("ns.dns.<zone> fits when the zone does")
    }

    /// The zone apexes: SOA, and NS with the name server's addresses as glue.
    fn apex_records_only(&mut self) {
        let ttl = self.cfg.ttl;
        let ns_name = self.ns_name();
        let glue = self.address_records(&ns_name, &self.cfg.ns_addresses.clone());
        let apexes: Vec<(Name, Record)> = self
            .zones
            .iter()
            .map(|z| (Name::from(z.origin.clone()), z.soa.clone()))
            .collect();
        for (origin, soa) in apexes {
            self.add(&origin, soa.data.clone(), self.cfg.negative_ttl);
            self.add(&origin, RData::NS(NS(ns_name.clone())), ttl);
            self.add_glue(&origin, RecordType::NS, glue.clone());
        }
    }

    /// The apexes and the fixed names below the cluster zone.
    fn apex_records(&mut self) {
        let ttl = self.cfg.ttl;
        let ns_name = self.ns_name();
        // The name the NS records point at always exists, with or without addresses.
        self.exists(&ns_name);
        for ip in self.cfg.ns_addresses.clone() {
            self.add(&ns_name, address_rdata(ip), ttl);
        }
        self.apex_records_only();
        if let Some(v) = self.name(&["dns-version"]) {
            self.add(
                &v,
                RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                DNS_VERSION_TTL,
            );
        }
        for zone_child in [["svc"], ["pod"]] {
            if let Some(n) = self.name(&zone_child) {
                self.exists(&n);
            }
        }
    }

    /// The fixed names with every ancestor up to their zone (RFC 8020: an NXDOMAIN means
    /// nothing exists below), their records and pre-encoded responses.
    fn finish(self) -> Core {
        let Builder {
            cfg: _,
            zones,
            sets,
            names,
        } = self;
        let mut entries: HashMap<LowerName, NameEntry> = HashMap::with_capacity(names.len());
        let mut records = 0;
        for ((lower, rtype), set) in sets {
            let SetBuilder {
                owner,
                answers,
                additionals,
                ..
            } = set;
            records += answers.len();
            entries.entry(lower).or_default().rrsets.push(RrSet::new(
                &owner,
                rtype,
                answers,
                additionals,
            ));
        }
        for (lower, name) in names {
            let mut current = name;
            let mut key = lower;
            loop {
                let in_zone = zones.iter().any(|z| z.origin.zone_of(&key));
                if !in_zone {
                    break;
                }
                entries.entry(key.clone()).or_default();
                if zones.iter().any(|z| z.origin == key) || current.num_labels() == 0 {
                    break;
                }
                current = current.base_name();
                key = LowerName::new(&current);
            }
        }
        for z in &zones {
            entries.entry(z.origin.clone()).or_default();
        }
        let names = entries.len();
        let mut core = HashMap::with_capacity(entries.len());
        for (lower, mut entry) in entries {
            entry.rrsets.sort_by_key(|r| u16::from(r.rtype));
            let name = Name::from(lower);
            let fast = FastName {
                rrsets: entry
                    .rrsets
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.rtype,
                            wire::prepare(&name, r.rtype, &r.answers, &r.additionals)?,
                        ))
                    })
                    .collect(),
            };
            core.insert(
                wire::wire_name(&name).into_boxed_slice(),
                CoreName { entry, fast },
            );
        }
        let fast_zones = zones
            .iter()
            .map(|z| FastZone {
                wire: wire::wire_name(&Name::from(z.origin.clone())).into_boxed_slice(),
                soa_tail: wire::soa_tail(&z.soa).unwrap_or_default(),
            })
            .collect();
        Core {
            zones,
            fast_zones,
            core,
            names,
            records,
        }
    }
}

/// The fixed part of a snapshot.
struct Core {
    zones: Vec<Zone>,
    fast_zones: Vec<FastZone>,
    core: HashMap<Box<[u8]>, CoreName>,
    names: usize,
    records: usize,
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

fn soa_record(origin: &Name, zone: &Name, serial: u32, negative_ttl: u32) -> Record {
    let mname = Name::from_ascii("ns.dns.").and_then(|n| n.append_domain(zone));
    let rname = Name::from_ascii("hostmaster.").and_then(|n| n.append_domain(zone));
    let (mname, rname) = match (mname, rname) {
        (Ok(m), Ok(r)) => (m, r),
        _ => (zone.clone(), zone.clone()),
    };
    Record::from_rdata(
        origin.clone(),
        negative_ttl,
        RData::SOA(SOA::new(
            mname,
            rname,
            serial,
            7200,
            1800,
            86400,
            negative_ttl,
        )),
    )
}
