//! The immutable snapshot the DNS handler reads.

use std::collections::HashMap;

use hickory_proto::rr::{LowerName, Record, RecordType};

use crate::controller::IdentityState;

/// One zone petdns is authoritative for, with its SOA for negative answers.
#[derive(Debug)]
pub struct Zone {
    pub origin: LowerName,
    pub num_labels: usize,
    pub soa: Record,
}

/// One record set at a name, with the glue that goes in the Additional section.
#[derive(Debug)]
pub struct RrSet {
    pub rtype: RecordType,
    pub answers: Box<[Record]>,
    pub additionals: Box<[Record]>,
    /// Encoded size of the answers (after the question, compressed against it).
    pub answers_len: usize,
    /// Encoded size of the additionals, after the answers.
    pub additionals_len: usize,
}

/// Everything that exists at one name. An entry with no record sets is a name that exists
/// (a declared identity with nothing published, an empty non-terminal): NODATA, not NXDOMAIN.
#[derive(Debug, Default)]
pub struct NameEntry {
    pub rrsets: Vec<RrSet>,
}

impl NameEntry {
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// A name as the fast path sees it: its record sets as complete pre-encoded responses.
#[derive(Debug, Default)]
pub struct FastName {
    pub rrsets: Vec<(RecordType, Box<[u8]>)>,
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

/// What one question resolves to.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Outside every zone served.
    Refused,
    /// Inside a zone, but the source has not loaded yet.
    NotLoaded(&'a Zone),
    NxDomain(&'a Zone),
    NoData(&'a Zone),
    Found(&'a Zone, &'a RrSet),
    /// QTYPE ANY on an existing name (answered minimally, RFC 8482).
    AnyExists(&'a Zone),
}

/// An immutable view of every answer; replaced whole, never mutated.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub serial: u32,
    pub loaded: bool,
    pub zones: Vec<Zone>,
    pub names: HashMap<LowerName, NameEntry>,
    /// The same names keyed by lower-case wire format, with pre-encoded responses.
    pub fast: HashMap<Box<[u8]>, FastName>,
    /// The zones, in the order of `zones`.
    pub fast_zones: Vec<FastZone>,
    pub stats: SnapshotStats,
}

impl Snapshot {
    /// The zone holding `name`, most specific first.
    pub fn zone_of(&self, name: &LowerName) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.num_labels)
    }

    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Lookup<'_> {
        let Some(zone) = self.zone_of(name) else {
            return Lookup::Refused;
        };
        if !self.loaded {
            return Lookup::NotLoaded(zone);
        }
        let Some(entry) = self.names.get(name) else {
            return Lookup::NxDomain(zone);
        };
        if rtype == RecordType::ANY {
            return Lookup::AnyExists(zone);
        }
        match entry.get(rtype) {
            Some(rrset) => Lookup::Found(zone, rrset),
            None => Lookup::NoData(zone),
        }
    }
}
