//! Building a [`Snapshot`] from identity tables (compute on write).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tracing::warn;

use super::snapshot::{FastName, FastZone, NameEntry, RrSet, Snapshot, SnapshotStats, Zone};
use super::wire;
use crate::controller::{CLAIM_SEPARATOR, IdentityState, IdentityTable, SrvPriority};

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

/// Builds the snapshot for `tables`. `namespaces` are the namespaces that exist (their
/// `<ns>.svc.<zone>` names answer NODATA). `loaded` is false only for the placeholder served
/// before the first load.
pub fn build(
    tables: &[IdentityTable],
    namespaces: &BTreeSet<String>,
    cfg: &IndexConfig,
    generation: u64,
    serial: u32,
) -> Snapshot {
    let mut b = Builder::new(cfg, serial);
    b.apex_records();
    for ns in namespaces {
        if let Some(n) = b.name(&[ns, "svc"]) {
            b.exists(&n);
        }
        if let Some(n) = b.name(&[ns, "pod"]) {
            b.exists(&n);
        }
    }

    // Group resolved tables by governing Service: several sets may share one.
    let mut by_service: BTreeMap<(&str, &str), Vec<&IdentityTable>> = BTreeMap::new();
    for t in tables
        .iter()
        .filter(|t| t.service_resolved() && !t.service.is_empty())
    {
        by_service
            .entry((&t.namespace, &t.service))
            .or_default()
            .push(t);
    }
    for ((ns, svc), group) in &by_service {
        b.service(ns, svc, group);
    }

    let mut by_state: BTreeMap<IdentityState, usize> = BTreeMap::new();
    for t in tables {
        for i in &t.identities {
            *by_state.entry(i.state).or_default() += 1;
        }
    }
    let mut snap = b.finish(generation);
    snap.stats.tables = tables.len();
    snap.stats.identities_by_state = IdentityState::ALL
        .iter()
        .map(|s| (*s, by_state.get(s).copied().unwrap_or(0)))
        .collect();
    snap
}

/// An empty, not-yet-loaded snapshot: every in-zone question gets SERVFAIL.
pub fn placeholder(cfg: &IndexConfig) -> Snapshot {
    let mut snap = Builder::new(cfg, 0).finish(0);
    snap.loaded = false;
    snap
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
    serial: u32,
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
            serial,
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

    fn apex_records(&mut self) {
        let ttl = self.cfg.ttl;
        let ns_name = Name::from_ascii("ns.dns.")
            .and_then(|n| n.append_domain(&self.cfg.zone))
            .expect("ns.dns.<zone> fits when the zone does");
        // The name the NS records point at always exists, with or without addresses.
        self.exists(&ns_name);
        for ip in self.cfg.ns_addresses.clone() {
            self.add(&ns_name, address_rdata(ip), ttl);
        }
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

    fn service(&mut self, ns: &str, svc: &str, group: &[&IdentityTable]) {
        let ttl = self.cfg.ttl;
        let Some(svc_name) = self.name(&[svc, ns, "svc"]) else {
            return;
        };
        let declared = group.iter().any(|t| t.ordinals.replicas > 0);
        if declared {
            self.exists(&svc_name);
        }

        // (target, ports of its table, priority, addresses) for every published identity.
        struct Target<'t> {
            name: Name,
            addresses: &'t [IpAddr],
            table: &'t IdentityTable,
            priority: u16,
        }
        let mut targets: Vec<Target<'_>> = Vec::new();
        for table in group {
            for identity in &table.identities {
                let declared_here = table.ordinals.contains(identity.ordinal);
                if !declared_here && !identity.published {
                    continue;
                }
                // The pod name: a published identity's hostname equals it (reconcile checks), and
                // a declared one keeps its name even when its pod has another hostname.
                let Some(host) = self.name(&[&identity.pod, svc, ns, "svc"]) else {
                    continue;
                };
                self.exists(&host);
                self.add(
                    &host,
                    RData::TXT(TXT::new(identity_facts(table, identity))),
                    ttl,
                );
                if !identity.published {
                    continue;
                }
                let priority = match table.srv_priority {
                    SrvPriority::Uniform => 0,
                    SrvPriority::Ordinal => {
                        u16::try_from(identity.ordinal.saturating_sub(table.ordinals.start))
                            .unwrap_or(u16::MAX)
                    }
                };
                for ip in identity.published_addresses() {
                    self.add(&host, address_rdata(*ip), ttl);
                    self.add(&svc_name, address_rdata(*ip), ttl);
                    self.add(
                        &Name::from(*ip).to_lowercase(),
                        RData::PTR(PTR(host.clone())),
                        ttl,
                    );
                }
                targets.push(Target {
                    name: host,
                    addresses: identity.published_addresses(),
                    table,
                    priority,
                });
            }
        }

        // Per-identity SRV: that identity's ports, target itself.
        for t in &targets {
            for p in &t.table.ports {
                self.add(&t.name, srv(t.priority, p.port, &t.name), ttl);
            }
            let glue = self.address_records(&t.name, t.addresses);
            self.add_glue(&t.name, RecordType::SRV, glue);
        }

        // Service SRV: every port, named or not, of every published identity.
        for t in &targets {
            for p in &t.table.ports {
                self.add(&svc_name, srv(t.priority, p.port, &t.name), ttl);
            }
            let glue = self.address_records(&t.name, t.addresses);
            self.add_glue(&svc_name, RecordType::SRV, glue);
        }

        // `_port._proto` SRV (and the underscore-less `port.proto` form CoreDNS also parses).
        let mut named: BTreeSet<(String, String)> = BTreeSet::new();
        for table in group
            .iter()
            .filter(|t| t.ordinals.replicas > 0 || t.published() > 0)
        {
            for p in &table.ports {
                if let Some(name) = &p.name {
                    named.insert((name.to_ascii_lowercase(), p.protocol.to_ascii_lowercase()));
                }
            }
        }
        for (port_name, proto) in named {
            let forms = [
                self.name(&[
                    &format!("_{port_name}"),
                    &format!("_{proto}"),
                    svc,
                    ns,
                    "svc",
                ]),
                self.name(&[&port_name, &proto, svc, ns, "svc"]),
            ];
            let matching: Vec<(&Target<'_>, u16)> = targets
                .iter()
                .flat_map(|t| {
                    t.table
                        .ports
                        .iter()
                        .filter(|p| {
                            p.name
                                .as_deref()
                                .is_some_and(|n| n.eq_ignore_ascii_case(&port_name))
                                && p.protocol.eq_ignore_ascii_case(&proto)
                        })
                        .map(move |p| (t, p.port))
                })
                .collect();
            for form in forms.into_iter().flatten() {
                if declared {
                    self.exists(&form);
                }
                for (t, port) in &matching {
                    self.add(&form, srv(t.priority, *port, &t.name), ttl);
                }
                for (t, _) in &matching {
                    let glue = self.address_records(&t.name, t.addresses);
                    self.add_glue(&form, RecordType::SRV, glue);
                }
            }
        }
    }

    fn finish(self, generation: u64) -> Snapshot {
        let Builder {
            cfg: _,
            serial,
            zones,
            sets,
            names,
        } = self;
        let mut entries: HashMap<LowerName, NameEntry> = HashMap::with_capacity(names.len());
        let mut records = 0;
        for ((lower, rtype), set) in sets {
            let SetBuilder {
                owner,
                mut answers,
                additionals,
                ..
            } = set;
            if rtype == RecordType::SRV {
                set_srv_weights(&mut answers);
            }
            records += answers.len();
            let (answers_len, additionals_len) =
                encoded_lens(&owner, rtype, &answers, &additionals);
            entries.entry(lower).or_default().rrsets.push(RrSet {
                rtype,
                answers: answers.into_boxed_slice(),
                additionals: additionals.into_boxed_slice(),
                answers_len,
                additionals_len,
            });
        }
        // Every name exists, and so does every name between it and its zone (RFC 8020: an
        // NXDOMAIN means nothing exists below).
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
        for e in entries.values_mut() {
            e.rrsets.sort_by_key(|r| u16::from(r.rtype));
        }
        let (fast, fast_zones) = fast_tables(&entries, &zones);
        Snapshot {
            generation,
            serial,
            loaded: true,
            stats: SnapshotStats {
                names: entries.len(),
                records,
                ..Default::default()
            },
            zones,
            names: entries,
            fast,
            fast_zones,
        }
    }
}

fn identity_facts(table: &IdentityTable, identity: &crate::controller::Identity) -> Vec<String> {
    let mut facts = vec![
        format!("ordinal={}", identity.ordinal),
        format!("set={}", table.stateful_set),
        format!("state={}", identity.state),
    ];
    if let Some(rev) = &identity.revision {
        facts.push(format!("revision={rev}"));
    }
    if !identity.claims.is_empty() {
        facts.push(format!("claims={}", identity.claims.join(CLAIM_SEPARATOR)));
    }
    facts
}

/// An SRV record whose weight [`set_srv_weights`] fills in once its set is complete.
fn srv(priority: u16, port: u16, target: &Name) -> RData {
    RData::SRV(SRV::new(priority, 0, port, target.clone()))
}

/// Weight `max(1, floor(100 / N))`, N the records in the answer: counted after
/// de-duplication, since two Service ports with one target port (53/UDP and 53/TCP) give one
/// record, not two.
fn set_srv_weights(answers: &mut [Record]) {
    let weight = (100 / answers.len().max(1)).max(1) as u16;
    for r in answers {
        if let RData::SRV(s) = &mut r.data {
            s.weight = weight;
        }
    }
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

/// Encoded sizes of the answers and additionals as they follow a question for `owner`,
/// compressed as the response encoder compresses them.
fn encoded_lens(
    owner: &Name,
    rtype: RecordType,
    answers: &[Record],
    additionals: &[Record],
) -> (usize, usize) {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    let mut measure = || -> Result<(usize, usize), hickory_proto::ProtoError> {
        owner.emit(&mut enc)?;
        enc.emit_u16(u16::from(rtype))?;
        enc.emit_u16(1)?;
        let q = enc.offset();
        for r in answers {
            r.emit(&mut enc)?;
        }
        let a = enc.offset();
        for r in additionals {
            r.emit(&mut enc)?;
        }
        Ok((a - q, enc.offset() - a))
    };
    // Encoding into a Vec cannot run out of space; an error means a malformed record, which
    // the builder never makes. Fall back to "too large" so it is only ever sent over TCP.
    measure().unwrap_or((usize::MAX / 4, usize::MAX / 4))
}

/// The fast path's view: every name by lower-case wire format, each record set as a complete
/// pre-encoded response, and each zone's SOA for negative answers.
fn fast_tables(
    entries: &HashMap<LowerName, NameEntry>,
    zones: &[Zone],
) -> (HashMap<Box<[u8]>, FastName>, Vec<FastZone>) {
    let mut fast = HashMap::with_capacity(entries.len());
    for (lower, entry) in entries {
        let name = Name::from(lower.clone());
        let rrsets = entry
            .rrsets
            .iter()
            .filter_map(|r| {
                Some((
                    r.rtype,
                    wire::prepare(&name, r.rtype, &r.answers, &r.additionals)?,
                ))
            })
            .collect();
        fast.insert(
            wire::wire_name(&name).into_boxed_slice(),
            FastName { rrsets },
        );
    }
    let fast_zones = zones
        .iter()
        .map(|z| FastZone {
            wire: wire::wire_name(&Name::from(z.origin.clone())).into_boxed_slice(),
            soa_tail: wire::soa_tail(&z.soa).unwrap_or_default(),
        })
        .collect();
    (fast, fast_zones)
}
