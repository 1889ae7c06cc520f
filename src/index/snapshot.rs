//! The immutable snapshot the DNS handler reads.
//!
//! Three kinds of names, each found in one step:
//! - fixed names (zone apexes, `ns.dns`, `dns-version`, `svc`, `pod`, namespaces) in a small map
//!   with their records and their pre-encoded responses;
//! - names under `svc.<zone>` parsed as `<svc>.<ns>` (one map lookup for the Service) and the
//!   labels below it (a pod, a named port), answered from the Service's compact data;
//! - reverse names parsed as an address, found in an ordered map (ordered, so the parents of
//!   reverse names are answered as empty non-terminals with one range query).
//!
//! The Service and address maps are [`Chunks`]: an update copies only the chunks it touches,
//! so a new snapshot after one pod's change shares everything else with the old one.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::chunks::Chunks;
use super::service::{PtrTarget, ServiceData, Sink, Sub};
use crate::identity::IdentityState;

/// One zone petdns is authoritative for, with its SOA for negative answers.
#[derive(Debug)]
pub struct Zone {
    pub origin: LowerName,
    pub num_labels: usize,
    pub soa: Record,
}

/// Index of the cluster zone in [`Snapshot::zones`]; the reverse zones follow.
pub const CLUSTER: usize = 0;
pub const IN_ADDR: usize = 1;
pub const IP6: usize = 2;

/// One record set at a name, with the glue that goes in the Additional section.
#[derive(Clone, Debug)]
pub struct RrSet {
    pub rtype: RecordType,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Encoded size of the answers (after the question, compressed against it).
    pub answers_len: usize,
    /// Encoded size of the additionals, after the answers.
    pub additionals_len: usize,
}

impl RrSet {
    /// A record set with its encoded sizes.
    pub(crate) fn new(
        owner: &Name,
        rtype: RecordType,
        answers: Vec<Record>,
        additionals: Vec<Record>,
    ) -> RrSet {
        let (answers_len, additionals_len) = encoded_lens(owner, rtype, &answers, &additionals);
        RrSet {
            rtype,
            answers,
            additionals,
            answers_len,
            additionals_len,
        }
    }
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

/// Everything that exists at one fixed name. An entry with no record sets is a name that exists
/// (an empty non-terminal): NODATA, not NXDOMAIN.
#[derive(Debug, Default)]
pub struct NameEntry {
    pub rrsets: Vec<RrSet>,
}

impl NameEntry {
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// A fixed name as the fast path sees it: its record sets as complete pre-encoded responses.
#[derive(Debug, Default)]
pub struct FastName {
    pub rrsets: Vec<(RecordType, Box<[u8]>)>,
}

/// A fixed name: its records and their pre-encoded responses.
#[derive(Debug, Default)]
pub struct CoreName {
    pub entry: NameEntry,
    pub fast: FastName,
}

/// A zone as the fast path sees it.
#[derive(Debug)]
pub struct FastZone {
    /// The origin in wire format, lower case.
    pub wire: Box<[u8]>,
    /// The zone's SOA record after its owner name.
    pub soa_tail: Box<[u8]>,
}

/// Counts published with the snapshot, for metrics and logs.
#[derive(Debug, Default, Clone)]
pub struct SnapshotStats {
    pub names: usize,
    pub records: usize,
    pub tables: usize,
    pub identities_by_state: Vec<(IdentityState, usize)>,
}

/// What a name is, once found.
#[derive(Clone, Copy, Debug)]
pub enum Node<'s> {
    Core(&'s CoreName),
    Service(&'s ServiceData, Sub<'s>),
    /// A reverse name: the targets of its address in one of the reverse maps.
    Ptr4(&'s Chunks<u32, PtrTarget>, u32),
    Ptr6(&'s Chunks<u128, PtrTarget>, u128),
    /// An empty non-terminal (a namespace with Services, a reverse name's parent).
    Empty,
}

impl Node<'_> {
    /// Hands the computed records of `qtype` to `sink` (not for [`Node::Core`], whose records
    /// are stored); returns how many answers there were.
    pub fn answer(&self, qtype: RecordType, sink: &mut impl Sink) -> usize {
        match self {
            Node::Service(data, sub) => data.answer(*sub, qtype, sink),
            Node::Ptr4(map, key) if qtype == RecordType::PTR => map.get_all(key).fold(0, |n, t| {
                sink.answer(super::service::Data::Ptr(t.host()));
                n + 1
            }),
            Node::Ptr6(map, key) if qtype == RecordType::PTR => map.get_all(key).fold(0, |n, t| {
                sink.answer(super::service::Data::Ptr(t.host()));
                n + 1
            }),
            _ => 0,
        }
    }
}

/// What one question resolves to.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Outside every zone served.
    Refused,
    /// Inside a zone, but the source has not loaded yet.
    NotLoaded(&'a Zone),
    NxDomain(&'a Zone),
    NoData(&'a Zone),
    Found(&'a Zone, RrSet),
    /// QTYPE ANY on an existing name (answered minimally, RFC 8482).
    AnyExists(&'a Zone),
}

/// An immutable view of every answer; replaced whole, never mutated.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub serial: u32,
    pub loaded: bool,
    /// The cluster zone, then `in-addr.arpa.` and `ip6.arpa.` (see [`CLUSTER`]).
    pub zones: Vec<Zone>,
    /// The zones in wire format, in the order of `zones`.
    pub fast_zones: Vec<FastZone>,
    /// The zone apexes (they carry the serial), in the order of `zones`.
    pub apexes: Vec<CoreName>,
    /// The other fixed names by lower-case wire format, shared between snapshots.
    pub core: Arc<HashMap<Box<[u8]>, CoreName>>,
    /// Governing Services by the hash of `<svc>.<ns>` ([`key_hash`]).
    pub services: Chunks<u64, Arc<ServiceData>>,
    /// Namespaces that hold Services, with how many, by the hash of the namespace.
    pub service_namespaces: Chunks<u64, (Arc<str>, u32)>,
    /// Published addresses to their identities.
    pub v4: Chunks<u32, PtrTarget>,
    pub v6: Chunks<u128, PtrTarget>,
    /// TTL of computed records.
    pub ttl: u32,
    pub stats: SnapshotStats,
}

impl Snapshot {
    /// Index (into `zones`) of the zone holding `name`, most specific first.
    pub fn zone_index(&self, name: &LowerName) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.origin.zone_of(name))
            .max_by_key(|(_, z)| z.num_labels)
            .map(|(i, _)| i)
    }

    /// The zone holding `name`, most specific first.
    pub fn zone_of(&self, name: &LowerName) -> Option<&Zone> {
        self.zone_index(name).map(|i| &self.zones[i])
    }

    /// Finds a name: `key` is its lower-case wire format, `rel` its labels (lower case,
    /// leftmost first) below zone `zone`.
    pub fn resolve(&self, zone: usize, key: &[u8], rel: &[&[u8]]) -> Option<Node<'_>> {
        if let Some(z) = self.fast_zones.get(zone)
            && *z.wire == *key
        {
            return self.apexes.get(zone).map(Node::Core);
        }
        if let Some(core) = self.core.get(key) {
            return Some(Node::Core(core));
        }
        match zone {
            CLUSTER => self.resolve_cluster(rel),
            IN_ADDR => self.resolve_v4(rel),
            IP6 => self.resolve_v6(rel),
            _ => None,
        }
    }

    fn resolve_cluster(&self, rel: &[&[u8]]) -> Option<Node<'_>> {
        let n = rel.len();
        if n < 2 || rel[n - 1] != b"svc" {
            return None;
        }
        let ns = std::str::from_utf8(rel[n - 2]).ok()?;
        if n == 2 {
            return self
                .service_namespaces
                .get_all(&key_hash(ns))
                .any(|(name, _)| **name == *ns)
                .then_some(Node::Empty);
        }
        let svc = std::str::from_utf8(rel[n - 3]).ok()?;
        if svc.contains('.') || ns.contains('.') {
            return None;
        }
        // `<svc>.<ns>` in a stack buffer: no allocation per query.
        let mut buf = [0u8; 128];
        let len = svc.len() + 1 + ns.len();
        if len > buf.len() {
            return None;
        }
        buf[..svc.len()].copy_from_slice(svc.as_bytes());
        buf[svc.len()] = b'.';
        buf[svc.len() + 1..len].copy_from_slice(ns.as_bytes());
        let key = std::str::from_utf8(&buf[..len]).ok()?;
        let data = self
            .services
            .get_all(&key_hash(key))
            .find(|d| **d.key() == *key)?;
        let sub = data.find(&rel[..n - 3])?;
        Some(Node::Service(data, sub))
    }

    fn resolve_v4(&self, rel: &[&[u8]]) -> Option<Node<'_>> {
        if rel.is_empty() || rel.len() > 4 {
            return None;
        }
        let mut prefix: u32 = 0;
        for label in rel.iter().rev() {
            prefix = (prefix << 8) | u32::from(decimal_octet(label)?);
        }
        if rel.len() == 4 {
            return self.v4.get(&prefix).map(|_| Node::Ptr4(&self.v4, prefix));
        }
        let free = 8 * (4 - rel.len() as u32);
        let lo = prefix << free;
        let hi = lo | ((1u32 << free) - 1);
        self.v4.first_in(&lo, &hi).map(|_| Node::Empty)
    }

    fn resolve_v6(&self, rel: &[&[u8]]) -> Option<Node<'_>> {
        if rel.is_empty() || rel.len() > 32 {
            return None;
        }
        let mut prefix: u128 = 0;
        for label in rel.iter().rev() {
            let [c] = label else { return None };
            let nibble = (*c as char).to_digit(16)?;
            prefix = (prefix << 4) | u128::from(nibble);
        }
        if rel.len() == 32 {
            return self.v6.get(&prefix).map(|_| Node::Ptr6(&self.v6, prefix));
        }
        let free = 4 * (32 - rel.len() as u32);
        let lo = prefix << free;
        let hi = lo | ((1u128 << free) - 1);
        self.v6.first_in(&lo, &hi).map(|_| Node::Empty)
    }

    /// The reference path's lookup: records as hickory records.
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Lookup<'_> {
        let Some(zi) = self.zone_index(name) else {
            return Lookup::Refused;
        };
        let zone = &self.zones[zi];
        if !self.loaded {
            return Lookup::NotLoaded(zone);
        }
        let key = super::wire::wire_name(name);
        let labels: Vec<&[u8]> = name.iter().collect();
        let rel = &labels[..labels.len().saturating_sub(zone.num_labels)];
        let Some(node) = self.resolve(zi, &key, rel) else {
            return Lookup::NxDomain(zone);
        };
        if rtype == RecordType::ANY {
            return Lookup::AnyExists(zone);
        }
        let rrset = match node {
            Node::Core(core) => core.entry.get(rtype).cloned(),
            node => {
                let cluster = Name::from(self.zones[CLUSTER].origin.clone());
                let mut sink =
                    super::sink::RecordSink::new(Name::from(name.clone()), &cluster, self.ttl);
                node.answer(rtype, &mut sink);
                (!sink.answers.is_empty()).then(|| {
                    RrSet::new(
                        &Name::from(name.clone()),
                        rtype,
                        sink.answers,
                        sink.additionals,
                    )
                })
            }
        };
        match rrset {
            Some(rrset) => Lookup::Found(zone, rrset),
            None => Lookup::NoData(zone),
        }
    }

    /// Every existing name, for tests: walks the whole snapshot.
    #[cfg(test)]
    pub fn all_names(&self) -> Vec<LowerName> {
        use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
        let mut names: std::collections::HashSet<LowerName> = std::collections::HashSet::new();
        let cluster = Name::from(self.zones[CLUSTER].origin.clone());
        for z in &self.zones {
            names.insert(z.origin.clone());
        }
        for wire in self.core.keys() {
            let name = Name::read(&mut BinDecoder::new(wire)).expect("core keys are names");
            names.insert(LowerName::new(&name));
        }
        let under = |text: &str| {
            Name::from_ascii(text)
                .and_then(|n| n.append_domain(&cluster))
                .expect("index names are valid")
        };
        for (_, (ns, _)) in self.service_namespaces.iter() {
            names.insert(LowerName::new(&under(&format!("{ns}.svc."))));
        }
        for (_, data) in self.services.iter() {
            let key = data.key();
            for rel in data.relative_names() {
                names.insert(LowerName::new(&under(&format!("{rel}{key}.svc."))));
            }
        }
        let reverse = self
            .v4
            .iter()
            .map(|(k, _)| Name::from(std::net::IpAddr::V4(Ipv4Addr::from(*k))))
            .chain(
                self.v6
                    .iter()
                    .map(|(k, _)| Name::from(std::net::IpAddr::V6(Ipv6Addr::from(*k)))),
            );
        for mut name in reverse {
            while name.num_labels() > 2 {
                names.insert(LowerName::new(&name));
                name = name.base_name();
            }
        }
        names.into_iter().collect()
    }
}

/// A reverse-name label as an octet: canonical decimal only (`01` is another name).
fn decimal_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    if !label.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(label).ok()?.parse().ok()
}

/// Helpers for the reverse maps' keys.
pub fn v4_key(a: Ipv4Addr) -> u32 {
    u32::from(a)
}

pub fn v6_key(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

/// The hash the Service and namespace maps are keyed by: FNV-1a, 64 bits. The keys are names
/// from the cluster's objects; a collision only makes one lookup compare two names.
pub fn key_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
