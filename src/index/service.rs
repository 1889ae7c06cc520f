//! Compact storage for one governing Service and the StatefulSets under it, and the answers
//! computed from it at query time.
//!
//! Nothing here is a DNS record: a Service holds its sets, each set its identities (ordinal,
//! state, a slice of one shared address array), and the names are derived (`<set>-<ordinal>`)
//! instead of stored. A query walks this structure and hands each record to a [`Sink`], which
//! either writes wire format (the fast path) or builds hickory records (the reference path).
//! One Service's data is replaced whole when one of its sets changes, and nothing else is.

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

#[derive(Debug, PartialEq, Eq)]
struct Ident {
    ordinal: i32,
    /// This identity's published addresses: `addrs[addr_start..addr_start + addr_len]`.
    addr_start: u32,
    addr_len: u16,
    priority: u16,
    state: IdentityState,
    published: bool,
    /// 0 for none, else an index + 1 into the set's revisions.
    revision: u16,
    /// Claims that do not follow the set's templates.
    claims: Option<Box<str>>,
}

/// A Service port: name (if any), protocol, number; lower case.
type ServicePort = (Option<Box<str>>, Box<str>, u16);

/// One StatefulSet's identities, as its Service publishes them; built from its table alone,
/// so a change to one set rebuilds only this and its Service's small summary.
#[derive(Debug, PartialEq, Eq)]
pub struct SetData {
    name: Arc<str>,
    /// `replicas > 0`: its Service's names exist even with nothing published.
    declared: bool,
    /// Distinct SRV ports of the set's Service ports, in order.
    srv_ports: Box<[u16]>,
    /// The Service ports as (name, protocol, port), lower case, for the named-port names.
    ports: Box<[ServicePort]>,
    /// The published addresses; each identity has a slice.
    addrs: Box<[IpAddr]>,
    revisions: Box<[Box<str>]>,
    claim_templates: Box<[Box<str>]>,
    /// Sorted by ordinal.
    idents: Box<[Ident]>,
}

/// A named port's `_<port>._<proto>` (and `<port>.<proto>`) names.
#[derive(Debug)]
struct NamedPort {
    name: Box<str>,
    proto: Box<str>,
    /// The matching port numbers of each set, in the order of `sets`.
    ports: Box<[Box<[u16]>]>,
    records: u32,
}

/// Where in a Service a name falls.
#[derive(Clone, Copy, Debug)]
pub enum Sub<'a> {
    /// `<svc>.<ns>.svc.<zone>`.
    Apex,
    Host(usize, usize),
    /// `_<proto>` or `<proto>`: an empty non-terminal above named ports.
    ProtoEnt,
    Named(&'a NamedPortRef),
}

/// Opaque handle to a named port, for [`Sub::Named`].
#[derive(Debug)]
pub struct NamedPortRef(NamedPort);

/// Everything under one governing Service.
#[derive(Debug)]
pub struct ServiceData {
    /// `<svc>.<ns>`, lower case.
    key: Arc<str>,
    svc_len: usize,
    sets: Box<[Arc<SetData>]>,
    /// The Service's A and AAAA answers, de-duplicated.
    v4: Box<[Ipv4Addr]>,
    v6: Box<[Ipv6Addr]>,
    srv_records: u32,
    named: Box<[NamedPortRef]>,
    names: u32,
    records: u32,
}

/// A reverse name's target: enough to write `<set>-<ordinal>.<svc>.<ns>.svc.<zone>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtrTarget {
    pub service: Arc<str>,
    pub set: Arc<str>,
    pub ordinal: i32,
}

impl PtrTarget {
    pub fn host(&self) -> Host<'_> {
        Host {
            set: &self.set,
            ordinal: self.ordinal,
            service: &self.service,
        }
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

impl ServiceData {
    /// Builds the data of Service `svc` in `ns` from its sets' data (in set-name order), with
    /// the reverse entries it publishes; `None` when nothing exists under the Service.
    pub fn build(
        ns: &str,
        svc: &str,
        sets: Vec<Arc<SetData>>,
    ) -> Option<(ServiceData, Vec<(IpAddr, PtrTarget)>)> {
        let key: Arc<str> = Arc::from(service_key(svc, ns));
        let declared = sets.iter().any(|s| s.declared);
        if !declared && sets.iter().all(|s| s.idents.is_empty()) {
            return None;
        }
        let mut ptrs = Vec::new();
        for set in &sets {
            for i in set.idents.iter() {
                for ip in set.addrs_of(i) {
                    ptrs.push((
                        *ip,
                        PtrTarget {
                            service: key.clone(),
                            set: set.name.clone(),
                            ordinal: i.ordinal,
                        },
                    ));
                }
            }
        }

        // Named ports of the sets that declare or publish something.
        let mut named: Vec<NamedPort> = Vec::new();
        for set in sets
            .iter()
            .filter(|s| s.declared || published(s).next().is_some())
        {
            for (name, proto, _) in set.ports.iter() {
                let Some(name) = name else { continue };
                if !named.iter().any(|n| n.name == *name && n.proto == *proto) {
                    named.push(NamedPort {
                        name: name.clone(),
                        proto: proto.clone(),
                        ports: Box::default(),
                        records: 0,
                    });
                }
            }
        }
        for n in &mut named {
            let ports: Vec<Box<[u16]>> = sets
                .iter()
                .map(|set| {
                    let mut ps: Vec<u16> = Vec::new();
                    for (name, proto, port) in set.ports.iter() {
                        if name.as_deref() == Some(&*n.name)
                            && *proto == n.proto
                            && !ps.contains(port)
                        {
                            ps.push(*port);
                        }
                    }
                    ps.into()
                })
                .collect();
            n.records = sets
                .iter()
                .zip(&ports)
                .map(|(s, ps)| published(s).count() as u32 * ps.len() as u32)
                .sum();
            n.ports = ports.into();
        }
        // Declared names exist with nothing published; otherwise only names with records do.
        named.retain(|n| declared || n.records > 0);

        let mut v4: Vec<Ipv4Addr> = Vec::new();
        let mut v6: Vec<Ipv6Addr> = Vec::new();
        let mut srv_records = 0u32;
        for s in &sets {
            for i in published(s) {
                for ip in s.addrs_of(i) {
                    match ip {
                        IpAddr::V4(a) => v4.push(*a),
                        IpAddr::V6(a) => v6.push(*a),
                    }
                }
                srv_records += s.srv_ports.len() as u32;
            }
        }
        // Two identities may share an address (host networking): the Service answers it once.
        dedup_in_order(&mut v4);
        dedup_in_order(&mut v6);

        let idents: usize = sets.iter().map(|s| s.idents.len()).sum();
        let addresses: usize = sets.iter().map(|s| s.addrs.len()).sum();
        let protos = {
            let mut p: Vec<&str> = named.iter().map(|n| &*n.proto).collect();
            p.sort_unstable();
            p.dedup();
            p.len()
        };
        let names = 1 + idents as u32 + 2 * (named.len() + protos) as u32;
        let records = (v4.len() + v6.len()) as u32
            + srv_records
            + idents as u32
            + addresses as u32 * 2
            + sets
                .iter()
                .map(|s| published(s).count() as u32 * s.srv_ports.len() as u32)
                .sum::<u32>()
            + 2 * named.iter().map(|n| n.records).sum::<u32>();
        let data = ServiceData {
            svc_len: svc.len(),
            key,
            sets: sets.into(),
            v4: v4.into(),
            v6: v6.into(),
            srv_records,
            named: named.into_iter().map(NamedPortRef).collect(),
            names,
            records,
        };
        Some((data, ptrs))
    }

    /// Every published address (each has a PTR to its identity).
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.sets.iter().flat_map(|s| s.addrs.iter())
    }

    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub fn namespace(&self) -> &str {
        &self.key[self.svc_len + 1..]
    }

    /// Names and records this Service contributes, for the snapshot's counts.
    pub fn counts(&self) -> (usize, usize) {
        (self.names as usize, self.records as usize)
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
        for n in &self.named {
            let n = &n.0;
            names.push(format!("_{}._{}.", n.name, n.proto));
            names.push(format!("{}.{}.", n.name, n.proto));
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
                self.named
                    .iter()
                    .any(|n| n.0.proto.as_bytes() == proto)
                    .then_some(Sub::ProtoEnt)
            }
            [port, proto] => {
                let (p, q) = match (port.strip_prefix(b"_"), proto.strip_prefix(b"_")) {
                    (Some(p), Some(q)) => (p, q),
                    (None, None) => (*port, *proto),
                    _ => return None,
                };
                self.named
                    .iter()
                    .find(|n| n.0.name.as_bytes() == p && n.0.proto.as_bytes() == q)
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
            (Sub::Apex, T::A) => {
                self.v4.iter().for_each(|a| sink.answer(Data::A(*a)));
                self.v4.len()
            }
            (Sub::Apex, T::AAAA) => {
                self.v6.iter().for_each(|a| sink.answer(Data::Aaaa(*a)));
                self.v6.len()
            }
            (Sub::Apex, T::SRV) => {
                let weight = srv_weight(self.srv_records as usize);
                self.srv(sink, weight, |s| &self.sets[s].srv_ports)
            }
            (Sub::Named(n), T::SRV) => {
                let n = &n.0;
                let weight = srv_weight(n.records as usize);
                self.srv(sink, weight, |s| &n.ports[s])
            }
            (Sub::Host(s, i), _) => {
                let set = &self.sets[s];
                let ident = &set.idents[i];
                let host = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                let addrs = set.addrs_of(ident);
                match qtype {
                    T::A | T::AAAA => {
                        let mut n = 0;
                        for ip in addrs {
                            match (ip, qtype) {
                                (IpAddr::V4(a), T::A) => sink.answer(Data::A(*a)),
                                (IpAddr::V6(a), T::AAAA) => sink.answer(Data::Aaaa(*a)),
                                _ => continue,
                            }
                            n += 1;
                        }
                        n
                    }
                    T::TXT => {
                        sink.answer(Data::Txt(Facts {
                            ordinal: ident.ordinal,
                            set: &set.name,
                            state: ident.state,
                            revision: match ident.revision {
                                0 => None,
                                r => set.revisions.get(r as usize - 1).map(|r| &**r),
                            },
                            claims: match &ident.claims {
                                Some(c) => Claims::Joined(c),
                                None => Claims::Templates(&set.claim_templates),
                            },
                        }));
                        1
                    }
                    T::SRV if ident.published && !set.srv_ports.is_empty() => {
                        let weight = srv_weight(set.srv_ports.len());
                        for port in &set.srv_ports {
                            sink.answer(Data::Srv {
                                priority: ident.priority,
                                weight,
                                port: *port,
                                target: host,
                            });
                        }
                        for ip in addrs {
                            sink.glue(host, *ip);
                        }
                        set.srv_ports.len()
                    }
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// SRV records for every published identity and its ports, then their glue.
    fn srv<'s>(
        &'s self,
        sink: &mut impl Sink,
        weight: u16,
        ports: impl Fn(usize) -> &'s [u16],
    ) -> usize {
        let service = &*self.key;
        let mut n = 0;
        for (s, set) in self.sets.iter().enumerate() {
            let ports = ports(s);
            if ports.is_empty() {
                continue;
            }
            for ident in published(set) {
                let target = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                for port in ports {
                    sink.answer(Data::Srv {
                        priority: ident.priority,
                        weight,
                        port: *port,
                        target,
                    });
                    n += 1;
                }
            }
        }
        for (s, set) in self.sets.iter().enumerate() {
            if ports(s).is_empty() {
                continue;
            }
            for ident in published(set) {
                let target = Host {
                    set: &set.name,
                    ordinal: ident.ordinal,
                    service,
                };
                for ip in set.addrs_of(ident) {
                    sink.glue(target, *ip);
                }
            }
        }
        n
    }
}

impl SetData {
    /// The data of one resolved table under Service `svc` in `ns`: the identities that are
    /// declared or published and whose names fit in DNS (`name_room` bytes below the zone).
    /// `None` when the Service's own name does not fit.
    pub fn build(table: &IdentityTable, ns: &str, svc: &str, name_room: usize) -> Option<SetData> {
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
        let mut srv_ports: Vec<u16> = Vec::new();
        for p in &table.ports {
            if !srv_ports.contains(&p.port) {
                srv_ports.push(p.port);
            }
        }
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
                (
                    name.map(Box::from),
                    Box::from(p.protocol.to_ascii_lowercase()),
                    p.port,
                )
            })
            .collect();
        let claim_templates = claim_templates(table, &set);
        let mut revisions: Vec<Box<str>> = Vec::new();
        let mut addrs: Vec<IpAddr> = Vec::new();
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
            let start = addrs.len();
            for ip in identity.published_addresses() {
                if !addrs[start..].contains(ip) {
                    addrs.push(*ip);
                }
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
            let claims = (!follows_templates(identity, &set, &claim_templates))
                .then(|| identity.claims.join(CLAIM_SEPARATOR).into_boxed_str());
            idents.push(Ident {
                ordinal: identity.ordinal,
                addr_start: start as u32,
                addr_len: (addrs.len() - start) as u16,
                priority: match table.srv_priority {
                    SrvPriority::Uniform => 0,
                    SrvPriority::Ordinal => {
                        u16::try_from(identity.ordinal.saturating_sub(table.ordinals.start))
                            .unwrap_or(u16::MAX)
                    }
                },
                state: identity.state,
                published: identity.published,
                revision: u16::try_from(revision).unwrap_or(0),
                claims,
            });
        }
        idents.sort_by_key(|i| i.ordinal);
        idents.dedup_by_key(|i| i.ordinal);
        Some(SetData {
            name: set,
            declared: table.ordinals.replicas > 0,
            srv_ports: srv_ports.into(),
            ports,
            addrs: addrs.into(),
            revisions: revisions.into(),
            claim_templates,
            idents: idents.into(),
        })
    }

    fn addrs_of(&self, ident: &Ident) -> &[IpAddr] {
        &self.addrs[ident.addr_start as usize..][..ident.addr_len as usize]
    }
}

fn published(set: &SetData) -> impl Iterator<Item = &Ident> {
    set.idents.iter().filter(|i| i.published)
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
fn claim_templates(table: &IdentityTable, set: &str) -> Box<[Box<str>]> {
    let Some(first) = table.identities.first() else {
        return Box::default();
    };
    let suffix = format!("-{set}-{}", first.ordinal);
    first
        .claims
        .iter()
        .map_while(|c| c.strip_suffix(&suffix).map(Box::from))
        .collect::<Vec<_>>()
        .into()
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
