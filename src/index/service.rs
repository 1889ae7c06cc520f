//! Compact storage for one governing Service and the StatefulSets under it, and the answers
//! computed from it at query time.
//!
//! Nothing here is a DNS record: a Service holds its sets, each set its identities (24 bytes
//! each: ordinal, state, flags, the IPv4 address inline, indices into the set's few tables),
//! and the names are derived (`<set>-<ordinal>`) instead of stored. A query walks this structure and hands each record to a [`Sink`], which
//! either writes wire format (the fast path) or builds hickory records (the reference path).
//! One Service's data is replaced whole when one of its sets changes, and nothing else is.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tracing::warn;

use crate::identity::{CLAIM_SEPARATOR, Identity, IdentityState, IdentityTable, SrvPriority};

/// A target or owner name below a Service: `<set>-<ordinal>.<svc>.<ns>.svc.<zone>`.
#[derive(Clone, Copy, Debug)]
pub struct Host<'a> {
    pub set: &'a str,
    pub ordinal: i32,
    /// The Service key, `<svc>.<ns>`.
    pub service: &'a str,
}

/// What a claim list is made of: the set's templates (`<template>-<set>-<ordinal>`), or a list
/// stored as given when it does not follow them.
#[derive(Clone, Copy, Debug)]
pub enum Claims<'a> {
    Templates(&'a [Box<str>]),
    Joined(&'a str),
}

/// An identity's facts, answered as one TXT record.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub ordinal: i32,
    pub set: &'a str,
    pub state: IdentityState,
    pub revision: Option<&'a str>,
    pub claims: Claims<'a>,
}

impl Facts<'_> {
    /// Calls `f` with each TXT string, in order.
    pub fn each(&self, mut f: impl FnMut(std::fmt::Arguments<'_>)) {
        f(format_args!("ordinal={}", self.ordinal));
        f(format_args!("set={}", self.set));
        f(format_args!("state={}", self.state));
        if let Some(rev) = self.revision {
            f(format_args!("revision={rev}"));
        }
        match self.claims {
            Claims::Templates([]) | Claims::Joined("") => {}
            claims => f(format_args!("claims={}", ClaimList(claims, self))),
        }
    }
}

struct ClaimList<'a>(Claims<'a>, &'a Facts<'a>);

impl std::fmt::Display for ClaimList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Claims::Joined(joined) => f.write_str(joined),
            Claims::Templates(templates) => {
                for (i, t) in templates.iter().enumerate() {
                    if i > 0 {
                        f.write_str(CLAIM_SEPARATOR)?;
                    }
                    write!(f, "{t}-{}-{}", self.1.set, self.1.ordinal)?;
                }
                Ok(())
            }
        }
    }
}

/// One record of an answer. The owner of an answer record is always the question's name.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Host<'a>,
    },
    Txt(Facts<'a>),
    Ptr(Host<'a>),
}

/// Where computed records go: wire format or hickory records.
pub trait Sink {
    fn answer(&mut self, data: Data<'_>);
    /// An address record for an SRV target, in the Additional section.
    fn glue(&mut self, owner: Host<'_>, ip: IpAddr);
}

/// `Ident::flags`: the identity's addresses are published.
const PUBLISHED: u8 = 1;
/// `Ident::flags`: `v4` holds a published IPv4 address.
const HAS_V4: u8 = 2;

/// One identity, 24 bytes: its names are derived (`<set>-<ordinal>`), its strings are indices
/// into its set's tables, and a pod has at most one address of each family (the API server
/// refuses `podIPs` with two of one family), so they are held inline (IPv4) and by index
/// (IPv6, only sets that have any pay for them).
#[derive(Debug, PartialEq, Eq)]
struct Ident {
    ordinal: i32,
    /// The published IPv4 address when `flags & HAS_V4`.
    v4: u32,
    /// Index + 1 into the set's `v6` (0: no published IPv6 address).
    v6: u32,
    /// Index + 1 into the set's `claims` when they do not follow its templates (0: they do).
    claims: u32,
    priority: u16,
    /// Index + 1 into the set's revisions (0: none).
    revision: u16,
    state: IdentityState,
    flags: u8,
}

impl Ident {
    fn published(&self) -> bool {
        self.flags & PUBLISHED != 0
    }
}

/// A Service port: name (if any), protocol, number; lower case.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    name: Option<Box<str>>,
    proto: Box<str>,
    port: u16,
}

/// One StatefulSet's identities, as its Service publishes them; built from its table alone,
/// so a change to one set rebuilds only this and its Service's small summary. What many sets
/// have alike (the Service key, the ports, the claim templates) is shared between them:
/// the key through the Indexer, the rest through the [`Interner`].
#[derive(Debug, PartialEq, Eq)]
pub struct SetData {
    name: Arc<str>,
    /// The Service key, `<svc>.<ns>`.
    service: Arc<str>,
    /// `replicas > 0`: its Service's names exist even with nothing published.
    declared: bool,
    /// The Service ports, lower case, for SRV and the named-port names.
    ports: Arc<[ServicePort]>,
    revisions: Box<[Box<str>]>,
    claim_templates: Arc<[Box<str>]>,
    /// Claim lists that do not follow the templates, joined.
    claims: Box<[Box<str>]>,
    /// Published IPv6 addresses, by `Ident::v6`.
    v6: Box<[Ipv6Addr]>,
    /// Sorted by ordinal.
    idents: Box<[Ident]>,
}

/// Values many sets have alike, kept once: a set built with an equal value gets the one
/// already held. Values no set holds any more are dropped when the table has doubled since.
#[derive(Default)]
pub struct Interner {
    ports: HashSet<Arc<[ServicePort]>>,
    templates: HashSet<Arc<[Box<str>]>>,
    pruned_at: usize,
}

impl Interner {
    fn ports(&mut self, ports: Vec<ServicePort>) -> Arc<[ServicePort]> {
        if let Some(a) = self.ports.get(ports.as_slice()) {
            return a.clone();
        }
        let a: Arc<[ServicePort]> = ports.into();
        self.ports.insert(a.clone());
        self.prune();
        a
    }

    fn templates(&mut self, templates: Vec<Box<str>>) -> Arc<[Box<str>]> {
        if let Some(a) = self.templates.get(templates.as_slice()) {
            return a.clone();
        }
        let a: Arc<[Box<str>]> = templates.into();
        self.templates.insert(a.clone());
        self.prune();
        a
    }

    /// Drops what only the interner still holds, once it has doubled since the last time.
    fn prune(&mut self) {
        let size = self.ports.len() + self.templates.len();
        if size < 2 * self.pruned_at.max(512) {
            return;
        }
        self.ports.retain(|a| Arc::strong_count(a) > 1);
        self.templates.retain(|a| Arc::strong_count(a) > 1);
        self.pruned_at = self.ports.len() + self.templates.len();
    }
}

/// Where in a Service a name falls.
#[derive(Clone, Copy, Debug)]
pub enum Sub<'a> {
    /// `<svc>.<ns>.svc.<zone>`.
    Apex,
    Host(usize, usize),
    /// `_<proto>` or `<proto>`: an empty non-terminal above named ports.
    ProtoEnt,
    /// `_<port>._<proto>`: a named port (any of the Service's ports with that name and
    /// protocol).
    Named(&'a ServicePort),
}

/// The addresses a Service answers when two of its identities share one (host networking):
/// each once.
#[derive(Debug)]
struct Shared {
    v4: Box<[Ipv4Addr]>,
    v6: Box<[Ipv6Addr]>,
}

/// Everything under one governing Service.
#[derive(Debug)]
pub struct ServiceData {
    /// `<svc>.<ns>`, lower case.
    key: Arc<str>,
    svc_len: u32,
    sets: Box<[Arc<SetData>]>,
    /// The Service's A and AAAA answers when they are not simply every published address.
    shared: Option<Box<Shared>>,
    srv_records: u32,
    names: u32,
    records: u32,
}

/// A reverse name's target: identity `index` of `set`.
#[derive(Clone, Debug)]
pub struct PtrTarget {
    pub set: Arc<SetData>,
    pub index: u32,
}

impl PartialEq for PtrTarget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.set, &other.set) && self.index == other.index
    }
}

impl PtrTarget {
    pub fn host(&self) -> Host<'_> {
        Host {
            set: &self.set.name,
            ordinal: self.set.idents[self.index as usize].ordinal,
            service: &self.set.service,
        }
    }

    /// The Service key of the target.
    pub fn service(&self) -> &str {
        &self.set.service
    }
}

/// The Service key, `<svc>.<ns>` lower case, as both the fast path and the build spell it.
pub fn service_key(svc: &str, ns: &str) -> String {
    let mut k = String::with_capacity(svc.len() + ns.len() + 1);
    k.push_str(svc);
    k.push('.');
    k.push_str(ns);
    k.make_ascii_lowercase();
    k
}

/// Splits a Service key into its Service and namespace.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap_or((key, ""))
}

/// Is `label` (lower case) exactly `<set>-<ordinal>` in canonical decimal?
fn ordinal_of(label: &[u8], set: &str) -> Option<i32> {
    let rest = label.strip_prefix(set.as_bytes())?.strip_prefix(b"-")?;
    if rest.is_empty() || (rest.len() > 1 && rest[0] == b'0') || rest.len() > 10 {
        return None;
    }
    if !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Which of a set's ports an SRV answer carries: all of them (the Service's own SRV, a pod's),
/// or those with a name and protocol (a named port).
#[derive(Clone, Copy)]
enum Ports<'a> {
    All,
    Named(&'a str, &'a str),
}

impl Ports<'_> {
    fn matches(&self, p: &ServicePort) -> bool {
        match self {
            Ports::All => true,
            Ports::Named(name, proto) => p.name.as_deref() == Some(*name) && *p.proto == **proto,
        }
    }
}

/// The distinct port numbers of `ports` that `which` selects, in order: what an SRV answer
/// carries per target.
fn ports_of<'p>(ports: &'p [ServicePort], which: Ports<'p>) -> impl Iterator<Item = u16> + 'p {
    ports
        .iter()
        .enumerate()
        .filter(move |(i, p)| {
            which.matches(p)
                && !ports[..*i]
                    .iter()
                    .any(|q| which.matches(q) && q.port == p.port)
        })
        .map(|(_, p)| p.port)
}

impl ServicePort {
    fn named(&self) -> Ports<'_> {
        Ports::Named(self.name.as_deref().unwrap_or(""), &self.proto)
    }
}

impl ServiceData {
    /// Builds the data of Service `svc` in `ns` from its sets' data (in set-name order); `None`
    /// when nothing exists under the Service. [`ServiceData::ptrs`] gives its reverse entries.
    pub fn build(ns: &str, svc: &str, sets: Vec<Arc<SetData>>) -> Option<ServiceData> {
        let declared = sets.iter().any(|s| s.declared);
        if !declared && sets.iter().all(|s| s.idents.is_empty()) {
            return None;
        }
        let key = sets.first()?.service.clone();
        debug_assert_eq!(*key, service_key(svc, ns));

        // The Service's addresses: every published one, once. Only when two identities share
        // an address (host networking) is the de-duplicated list kept.
        let mut v4: Vec<Ipv4Addr> = Vec::new();
        let mut v6: Vec<Ipv6Addr> = Vec::new();
        let mut srv_records = 0u32;
        for s in &sets {
            let srv = ports_of(&s.ports, Ports::All).count() as u32;
            for i in published(s) {
                if let Some(a) = s.v4_of(i) {
                    v4.push(a);
                }
                if let Some(a) = s.v6_of(i) {
                    v6.push(a);
                }
                srv_records += srv;
            }
        }
        let (n4, n6) = (v4.len(), v6.len());
        dedup_in_order(&mut v4);
        dedup_in_order(&mut v6);
        let shared = (v4.len() != n4 || v6.len() != n6).then(|| {
            Box::new(Shared {
                v4: v4.clone().into(),
                v6: v6.clone().into(),
            })
        });

        let data = ServiceData {
            svc_len: svc.len() as u32,
            key,
            sets: sets.into(),
            shared,
            srv_records,
            names: 0,
            records: 0,
        };
        let named: Vec<&ServicePort> = data.named_ports().collect();
        let protos = {
            let mut p: Vec<&str> = named.iter().map(|n| &*n.proto).collect();
            p.sort_unstable();
            p.dedup();
            p.len()
        };
        let idents: usize = data.sets.iter().map(|s| s.idents.len()).sum();
        let addresses: usize = data
            .sets
            .iter()
            .map(|s| {
                published(s)
                    .map(|i| usize::from(s.v4_of(i).is_some()) + usize::from(s.v6_of(i).is_some()))
                    .sum::<usize>()
            })
            .sum();
        let named_records: u32 = named.iter().map(|n| data.named_records(n)).sum();
        let named = named.len();
        let names = 1 + idents as u32 + 2 * (named + protos) as u32;
        let records = (v4.len() + v6.len()) as u32
            + srv_records
            + idents as u32
            + addresses as u32 * 2
            + srv_records
            + 2 * named_records;
        Some(ServiceData {
            names,
            records,
            ..data
        })
    }

    /// The reverse entries this Service publishes: each published address to its identity.
    pub fn ptrs(&self) -> impl Iterator<Item = (IpAddr, PtrTarget)> + '_ {
        self.sets.iter().flat_map(|set| {
            set.idents.iter().enumerate().flat_map(move |(index, i)| {
                let target = PtrTarget {
                    set: set.clone(),
                    index: index as u32,
                };
                let v4 = set.v4_of(i).map(IpAddr::V4);
                let v6 = set.v6_of(i).map(IpAddr::V6);
                v4.into_iter().chain(v6).map(move |ip| (ip, target.clone()))
            })
        })
    }

    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub fn namespace(&self) -> &str {
        &self.key[self.svc_len as usize + 1..]
    }

    /// Names and records this Service contributes, for the snapshot's counts.
    pub fn counts(&self) -> (usize, usize) {
        (self.names as usize, self.records as usize)
    }

    /// The named ports that exist under this Service, each (name, protocol) once, in order: a
    /// named port of a set that is declared or publishes something; with nothing declared,
    /// only those with records. Allocates nothing: the query path calls it.
    fn named_ports(&self) -> impl Iterator<Item = &ServicePort> {
        let declared = self.sets.iter().any(|s| s.declared);
        let candidates = move || {
            self.sets
                .iter()
                .filter(|s| s.declared || published(s).next().is_some())
                .flat_map(|s| s.ports.iter())
                .filter(|p| p.name.is_some())
        };
        candidates()
            .enumerate()
            .filter(move |(i, p)| {
                !candidates()
                    .take(*i)
                    .any(|q| q.name == p.name && q.proto == p.proto)
            })
            .map(|(_, p)| p)
            .filter(move |p| declared || self.named_records(p) > 0)
    }

    /// SRV records of a named port: every published identity times its set's matching ports.
    fn named_records(&self, n: &ServicePort) -> u32 {
        self.sets
            .iter()
            .map(|s| published(s).count() as u32 * ports_of(&s.ports, n.named()).count() as u32)
            .sum()
    }

    /// The names under this Service relative to it, each with a trailing dot (`""` for the
    /// Service itself), for tests.
    #[cfg(test)]
    pub fn relative_names(&self) -> Vec<String> {
        let mut names = vec![String::new()];
        for set in &self.sets {
            for i in &set.idents {
                names.push(format!("{}-{}.", set.name, i.ordinal));
            }
        }
        for n in self.named_ports() {
            let name = n.name.as_deref().unwrap_or("");
            names.push(format!("_{}._{}.", name, n.proto));
            names.push(format!("{}.{}.", name, n.proto));
            names.push(format!("_{}.", n.proto));
            names.push(format!("{}.", n.proto));
        }
        names.sort();
        names.dedup();
        names
    }

    /// Finds the name `sub` (labels below the Service name, lower case, leftmost first).
    pub fn find(&self, sub: &[&[u8]]) -> Option<Sub<'_>> {
        match sub {
            [] => Some(Sub::Apex),
            [label] => {
                for (s, set) in self.sets.iter().enumerate() {
                    if let Some(ordinal) = ordinal_of(label, &set.name)
                        && let Ok(i) = set.idents.binary_search_by_key(&ordinal, |i| i.ordinal)
                    {
                        return Some(Sub::Host(s, i));
                    }
                }
                let proto = label.strip_prefix(b"_").unwrap_or(label);
                self.named_ports()
                    .any(|n| n.proto.as_bytes() == proto)
                    .then_some(Sub::ProtoEnt)
            }
            [port, proto] => {
                let (p, q) = match (port.strip_prefix(b"_"), proto.strip_prefix(b"_")) {
                    (Some(p), Some(q)) => (p, q),
                    (None, None) => (*port, *proto),
                    _ => return None,
                };
                self.named_ports()
                    .find(|n| {
                        n.name.as_deref().map(str::as_bytes) == Some(p) && n.proto.as_bytes() == q
                    })
                    .map(Sub::Named)
            }
            _ => None,
        }
    }

    /// Hands the records of `qtype` at `sub` to `sink`; returns how many answers there were.
    pub fn answer(
        &self,
        sub: Sub<'_>,
        qtype: hickory_proto::rr::RecordType,
        sink: &mut impl Sink,
    ) -> usize {
        use hickory_proto::rr::RecordType as T;
        let service = &*self.key;
        match (sub, qtype) {
            (Sub::Apex, T::A) => match &self.shared {
                Some(shared) => {
                    shared.v4.iter().for_each(|a| sink.answer(Data::A(*a)));
                    shared.v4.len()
                }
                None => self.each_published(|s, i| s.v4_of(i), |a| sink.answer(Data::A(a))),
            },
            (Sub::Apex, T::AAAA) => match &self.shared {
                Some(shared) => {
                    shared.v6.iter().for_each(|a| sink.answer(Data::Aaaa(*a)));
                    shared.v6.len()
                }
                None => self.each_published(|s, i| s.v6_of(i), |a| sink.answer(Data::Aaaa(a))),
            },
            (Sub::Apex, T::SRV) => {
                let weight = srv_weight(self.srv_records as usize);
                self.srv(sink, weight, Ports::All)
            }
            (Sub::Named(n), T::SRV) => {
                let weight = srv_weight(self.named_records(n) as usize);
                self.srv(sink, weight, n.named())
            }
            (Sub::Host(s, i), _) => {
                let set = &self.sets[s];
                let ident = &set.idents[i];
                let host = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                match qtype {
                    T::A => set.v4_of(ident).map(|a| sink.answer(Data::A(a))).is_some() as usize,
                    T::AAAA => set
                        .v6_of(ident)
                        .map(|a| sink.answer(Data::Aaaa(a)))
                        .is_some() as usize,
                    T::TXT => {
                        sink.answer(Data::Txt(Facts {
                            ordinal: ident.ordinal,
                            set: &set.name,
                            state: ident.state,
                            revision: match ident.revision {
                                0 => None,
                                r => set.revisions.get(r as usize - 1).map(|r| &**r),
                            },
                            claims: match ident.claims {
                                0 => Claims::Templates(&set.claim_templates),
                                c => Claims::Joined(
                                    set.claims.get(c as usize - 1).map_or("", |c| &**c),
                                ),
                            },
                        }));
                        1
                    }
                    T::SRV if ident.published() => {
                        let n = ports_of(&set.ports, Ports::All).count();
                        if n == 0 {
                            return 0;
                        }
                        let weight = srv_weight(n);
                        for port in ports_of(&set.ports, Ports::All) {
                            sink.answer(Data::Srv {
                                priority: ident.priority,
                                weight,
                                port,
                                target: host,
                            });
                        }
                        for ip in set.addrs_of(ident) {
                            sink.glue(host, ip);
                        }
                        n
                    }
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Calls `answer` with `addr` of every published identity that has one; returns how many.
    fn each_published<A>(
        &self,
        addr: impl Fn(&SetData, &Ident) -> Option<A>,
        mut answer: impl FnMut(A),
    ) -> usize {
        let mut n = 0;
        for set in self.sets.iter() {
            for i in published(set) {
                if let Some(a) = addr(set, i) {
                    answer(a);
                    n += 1;
                }
            }
        }
        n
    }

    /// SRV records for every published identity and the ports `which` selects, then their glue.
    fn srv(&self, sink: &mut impl Sink, weight: u16, which: Ports<'_>) -> usize {
        let service = &*self.key;
        let mut n = 0;
        for set in self.sets.iter() {
            for ident in published(set) {
                let target = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                for port in ports_of(&set.ports, which) {
                    sink.answer(Data::Srv {
                        priority: ident.priority,
                        weight,
                        port,
                        target,
                    });
                    n += 1;
                }
            }
        }
        for set in self.sets.iter() {
            if ports_of(&set.ports, which).next().is_none() {
                continue;
            }
            for ident in published(set) {
                let target = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                for ip in set.addrs_of(ident) {
                    sink.glue(target, ip);
                }
            }
        }
        n
    }
}

impl SetData {
    /// The data of one resolved table under Service `svc` in `ns` (`service`: its key): the
    /// identities that are
    /// declared or published and whose names fit in DNS (`name_room` bytes below the zone).
    /// `None` when the Service's own name does not fit.
    pub fn build(
        table: &IdentityTable,
        ns: &str,
        svc: &str,
        service: &Arc<str>,
        name_room: usize,
        interner: &mut Interner,
    ) -> Option<SetData> {
        // `<svc>.<ns>.svc.` below the zone: labels with their length bytes.
        let fixed = 1 + svc.len() + 1 + ns.len() + 4;
        if svc.is_empty() || svc.len() > 63 || ns.is_empty() || ns.len() > 63 || fixed > name_room {
            warn!(
                service = svc,
                namespace = ns,
                "skipping a Service whose name is not valid in DNS"
            );
            return None;
        }
        let set: Arc<str> = Arc::from(table.stateful_set.to_ascii_lowercase());
        let ports = table
            .ports
            .iter()
            .map(|p| {
                // A named port's names must fit: `_<name>._<proto>.` below the Service.
                let name = p.name.as_deref().map(str::to_ascii_lowercase).filter(|n| {
                    n.len() < 63
                        && p.protocol.len() < 63
                        && fixed + n.len() + p.protocol.len() + 4 <= name_room
                });
                ServicePort {
                    name: name.map(Box::from),
                    proto: Box::from(p.protocol.to_ascii_lowercase()),
                    port: p.port,
                }
            })
            .collect();
        let templates = claim_templates(table, &set);
        let mut revisions: Vec<Box<str>> = Vec::new();
        let mut claims: Vec<Box<str>> = Vec::new();
        let mut v6: Vec<Ipv6Addr> = Vec::new();
        let mut idents: Vec<Ident> = Vec::new();
        for identity in &table.identities {
            if !table.ordinals.contains(identity.ordinal) && !identity.published {
                continue;
            }
            let label_len = set.len() + 1 + ordinal_len(identity.ordinal);
            let derived = identity
                .pod
                .eq_ignore_ascii_case(&format!("{}-{}", set, identity.ordinal));
            if !derived || label_len > 63 || fixed + 1 + label_len > name_room {
                warn!(pod = %identity.pod, service = svc, namespace = ns, "skipping a pod whose name is not valid in DNS");
                continue;
            }
            let addrs = identity.published_addresses();
            let a4 = addrs.iter().find_map(|ip| match ip {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            });
            let a6 = addrs.iter().find_map(|ip| match ip {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            });
            if addrs.len() > usize::from(a4.is_some()) + usize::from(a6.is_some()) {
                warn!(pod = %identity.pod, service = svc, namespace = ns, "a pod with more than one address of a family: the first of each is published");
            }
            let revision = match &identity.revision {
                None => 0,
                Some(r) => match revisions.iter().position(|x| **x == **r) {
                    Some(i) => i + 1,
                    None => {
                        revisions.push(r.as_str().into());
                        revisions.len()
                    }
                },
            };
            let claim = if follows_templates(identity, &set, &templates) {
                0
            } else {
                claims.push(identity.claims.join(CLAIM_SEPARATOR).into_boxed_str());
                claims.len() as u32
            };
            let v6_index = match a6 {
                None => 0,
                Some(a) => {
                    v6.push(a);
                    v6.len() as u32
                }
            };
            let mut flags = 0;
            if identity.published {
                flags |= PUBLISHED;
            }
            if a4.is_some() {
                flags |= HAS_V4;
            }
            idents.push(Ident {
                ordinal: identity.ordinal,
                v4: a4.map_or(0, u32::from),
                v6: v6_index,
                claims: claim,
                priority: match table.srv_priority {
                    SrvPriority::Uniform => 0,
                    SrvPriority::Ordinal => {
                        u16::try_from(identity.ordinal.saturating_sub(table.ordinals.start))
                            .unwrap_or(u16::MAX)
                    }
                },
                revision: u16::try_from(revision).unwrap_or(0),
                state: identity.state,
                flags,
            });
        }
        // Sorted by ordinal, one per ordinal; the indices into `v6` stay valid.
        idents.sort_by_key(|i| i.ordinal);
        idents.dedup_by_key(|i| i.ordinal);
        Some(SetData {
            name: set,
            service: service.clone(),
            declared: table.ordinals.replicas > 0,
            ports: interner.ports(ports),
            revisions: revisions.into(),
            claim_templates: interner.templates(templates),
            claims: claims.into(),
            v6: v6.into(),
            idents: idents.into(),
        })
    }

    fn v4_of(&self, i: &Ident) -> Option<Ipv4Addr> {
        (i.flags & HAS_V4 != 0).then(|| Ipv4Addr::from(i.v4))
    }

    fn v6_of(&self, i: &Ident) -> Option<Ipv6Addr> {
        (i.v6 != 0).then(|| self.v6[i.v6 as usize - 1])
    }

    /// The published addresses of an identity: IPv4, then IPv6.
    fn addrs_of(&self, i: &Ident) -> impl Iterator<Item = IpAddr> {
        self.v4_of(i)
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6_of(i).map(IpAddr::V6))
    }
}

fn published(set: &SetData) -> impl Iterator<Item = &Ident> {
    set.idents.iter().filter(|i| i.published())
}

/// Weight `max(1, floor(100 / N))`, N the records in the answer (after de-duplication).
fn srv_weight(records: usize) -> u16 {
    (100 / records.max(1)).max(1) as u16
}

fn ordinal_len(ordinal: i32) -> usize {
    let mut n = ordinal.unsigned_abs();
    let mut len = usize::from(ordinal < 0) + 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn dedup_in_order<T: Ord + Copy>(v: &mut Vec<T>) {
    if v.len() <= 1 {
        return;
    }
    let mut kept = std::collections::BTreeSet::new();
    v.retain(|x| kept.insert(*x));
}

/// The templates `t` such that every identity's claims are `<t>-<set>-<ordinal>`, in order.
fn claim_templates(table: &IdentityTable, set: &str) -> Vec<Box<str>> {
    let Some(first) = table.identities.first() else {
        return Vec::new();
    };
    let suffix = format!("-{set}-{}", first.ordinal);
    first
        .claims
        .iter()
        .map_while(|c| c.strip_suffix(&suffix).map(Box::from))
        .collect()
}

fn follows_templates(identity: &Identity, set: &str, templates: &[Box<str>]) -> bool {
    identity.claims.len() == templates.len()
        && identity.claims.iter().zip(templates).all(|(c, t)| {
            c.strip_prefix(&**t)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.strip_prefix(set))
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| {
                    r.parse() == Ok(identity.ordinal) && r == identity.ordinal.to_string()
                })
        })
}
