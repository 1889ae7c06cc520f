//! Building a [`Snapshot`] from identity tables (compute on write).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use tracing::warn;

use super::service::{PtrTarget, ServiceData, SetData, service_key};
use super::snapshot::{
    CoreName, FastName, FastZone, NameEntry, Ptrs, RrSet, Snapshot, SnapshotStats, Zone, v4_key,
    v6_key,
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

type TableKey = (String, String);

/// What the index keeps of one table: where it publishes, its compact data, its counts.
#[derive(Debug, PartialEq, Eq)]
struct TableEntry {
    group: Option<TableKey>,
    set: Option<Arc<SetData>>,
    states: [usize; IdentityState::ALL.len()],
}

/// Keeps the tables and the snapshot's parts between changes, so that a change rebuilds only
/// the Services it touches and a new snapshot shares everything else with the previous one.
pub struct Indexer {
    cfg: IndexConfig,
    /// Room for the labels of a name below the cluster zone (255 minus the zone's length).
    name_room: usize,
    /// Per table: what the index keeps of it (not the table itself).
    tables: HashMap<TableKey, TableEntry>,
    /// `(namespace, service)` to the sets it governs.
    groups: HashMap<TableKey, BTreeSet<String>>,
    namespaces: BTreeSet<String>,
    core: Arc<HashMap<Box<[u8]>, CoreName>>,
    core_counts: (usize, usize),
    services: imbl::HashMap<Arc<str>, Arc<ServiceData>>,
    service_namespaces: imbl::HashMap<Arc<str>, u32>,
    v4: imbl::OrdMap<u32, Ptrs>,
    v6: imbl::OrdMap<u128, Ptrs>,
    service_counts: (usize, usize),
    states: [usize; IdentityState::ALL.len()],
}

impl Indexer {
    pub fn new(cfg: IndexConfig) -> Indexer {
        let zone_len = wire::wire_name(&cfg.zone).len();
        let mut indexer = Indexer {
            name_room: 255usize.saturating_sub(zone_len),
            cfg,
            tables: HashMap::new(),
            groups: HashMap::new(),
            namespaces: BTreeSet::new(),
            core: Arc::default(),
            core_counts: (0, 0),
            services: imbl::HashMap::new(),
            service_namespaces: imbl::HashMap::new(),
            v4: imbl::OrdMap::new(),
            v6: imbl::OrdMap::new(),
            service_counts: (0, 0),
            states: [0; IdentityState::ALL.len()],
        };
        indexer.rebuild_core();
        indexer
    }

    /// All the tables, replacing the previous ones; only the Services whose tables differ
    /// are rebuilt.
    pub fn load(&mut self, tables: Vec<IdentityTable>, namespaces: BTreeSet<String>) {
        let mut fresh: HashMap<TableKey, IdentityTable> = tables
            .into_iter()
            .map(|t| ((t.namespace.clone(), t.stateful_set.clone()), t))
            .collect();
        let gone: Vec<TableKey> = self
            .tables
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .collect();
        let mut affected = BTreeSet::new();
        for key in gone {
            self.change(key, None, &mut affected);
        }
        for (key, table) in fresh.drain() {
            self.change(key, Some(table), &mut affected);
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
        for key in removed {
            self.change(key, None, &mut affected);
        }
        for t in upserts {
            let key = (t.namespace.clone(), t.stateful_set.clone());
            self.change(key, Some(t), &mut affected);
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
        let mut by_state = [0usize; IdentityState::ALL.len()];
        by_state.copy_from_slice(&self.states);
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
                    .map(|(s, n)| (*s, n))
                    .collect(),
            },
        }
    }

    fn change(
        &mut self,
        key: TableKey,
        new: Option<IdentityTable>,
        affected: &mut BTreeSet<TableKey>,
    ) {
        let new = new.map(|t| {
            let group = group_of(&t);
            let set = group
                .as_ref()
                .and_then(|(ns, svc)| SetData::build(&t, ns, svc, self.name_room))
                .map(Arc::new);
            let mut states = [0; IdentityState::ALL.len()];
            count_states(&t, &mut states);
            TableEntry { group, set, states }
        });
        // Conditions, node names and the like do not change an answer: nothing to rebuild.
        if self.tables.get(&key) == new.as_ref() {
            return;
        }
        if let Some(old) = self.tables.remove(&key) {
            for (total, n) in self.states.iter_mut().zip(old.states) {
                *total = total.saturating_sub(n);
            }
            if let Some(g) = old.group {
                if let Some(sets) = self.groups.get_mut(&g) {
                    sets.remove(&key.1);
                    if sets.is_empty() {
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
                self.groups
                    .entry(g.clone())
                    .or_default()
                    .insert(key.1.clone());
                affected.insert(g.clone());
            }
            self.tables.insert(key, new);
        }
    }

    /// Rebuilds the `affected` Services, and the fixed names if `namespaces` changed.
    fn finish(&mut self, affected: BTreeSet<TableKey>, namespaces: Option<BTreeSet<String>>) {
        for g in &affected {
            self.rebuild_service(g);
        }
        if let Some(namespaces) = namespaces
            && namespaces != self.namespaces
        {
            self.namespaces = namespaces;
            self.rebuild_core();
        }
    }

    fn rebuild_service(&mut self, (ns, svc): &TableKey) {
        let key = service_key(svc, ns);
        if let Some(old) = self.services.remove(key.as_str()) {
            for ip in old.addresses() {
                match ip {
                    IpAddr::V4(a) => without(&mut self.v4, v4_key(*a), &key),
                    IpAddr::V6(a) => without(&mut self.v6, v6_key(*a), &key),
                }
            }
            let (names, records) = old.counts();
            self.service_counts.0 -= names;
            self.service_counts.1 -= records;
            let ns_key: &str = old.namespace();
            let left = self.service_namespaces.get(ns_key).copied().unwrap_or(1) - 1;
            if left == 0 {
                self.service_namespaces.remove(ns_key);
            } else {
                self.service_namespaces.insert(Arc::from(ns_key), left);
            }
        }
        let sets: Vec<Arc<SetData>> = self
            .groups
            .get(&(ns.clone(), svc.clone()))
            .into_iter()
            .flatten()
            .filter_map(|set| self.tables.get(&(ns.clone(), set.clone()))?.set.clone())
            .collect();
        if sets.is_empty() {
            return;
        }
        let Some((data, ptrs)) = ServiceData::build(ns, svc, sets) else {
            return;
        };
        for (ip, target) in ptrs {
            match ip {
                IpAddr::V4(a) => with(&mut self.v4, v4_key(a), target),
                IpAddr::V6(a) => with(&mut self.v6, v6_key(a), target),
            }
        }
        let (names, records) = data.counts();
        self.service_counts.0 += names;
        self.service_counts.1 += records;
        let ns_key: Arc<str> = Arc::from(data.namespace());
        let n = self.service_namespaces.get(&*ns_key).copied().unwrap_or(0);
        self.service_namespaces.insert(ns_key, n + 1);
        self.services.insert(data.key().clone(), Arc::new(data));
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

fn with<K: Ord + Clone>(map: &mut imbl::OrdMap<K, Ptrs>, key: K, target: PtrTarget) {
    let next = match map.get(&key) {
        Some(p) => p.with(target),
        None => Ptrs::One(target),
    };
    map.insert(key, next);
}

fn without<K: Ord + Clone>(map: &mut imbl::OrdMap<K, Ptrs>, key: K, service: &str) {
    if let Some(p) = map.get(&key) {
        match p.without_service(service) {
            Some(rest) => {
                map.insert(key, rest);
            }
            None => {
                map.remove(&key);
            }
        }
    }
}

/// The `(namespace, service)` a table's identities are published under, if any.
fn group_of(t: &IdentityTable) -> Option<TableKey> {
    (t.service_resolved() && !t.service.is_empty())
        .then(|| (t.namespace.clone(), t.service.clone()))
}

fn count_states(t: &IdentityTable, states: &mut [usize; IdentityState::ALL.len()]) {
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
