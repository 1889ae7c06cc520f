//! Unit tests for the record index: identity tables in, lookups out, no sockets.
//!
//! Each test builds `IdentityTable` values directly with the builders below and checks the
//! answers `records.md` asks for. Addresses are RFC 5737 / RFC 3849 documentation addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use super::{IndexConfig, Lookup, RrSet, SCHEMA_VERSION, Snapshot, Zone, build, placeholder};
use crate::identity::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const ZONE: &str = "cluster.local.";
const SVC: &str = "nginx.default.svc.cluster.local.";
const TTL: u32 = 5;
const NEGATIVE_TTL: u32 = 7;
const SERIAL: u32 = 42;

fn cfg() -> IndexConfig {
    IndexConfig {
        zone: Name::from_ascii(ZONE).unwrap(),
        ttl: TTL,
        negative_ttl: NEGATIVE_TTL,
        ns_addresses: vec![ip("192.0.2.53"), ip("2001:db8::53")],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `192.0.2.<10 + ordinal>`: the default address of `web-<ordinal>`.
fn v4(ordinal: i32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + ordinal as u8))
}

/// `2001:db8::<0x10 + ordinal>`: the second address of a dual-stack `web-<ordinal>`.
fn v6(ordinal: i32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        0,
        0x10 + ordinal as u16,
    ))
}

fn port(name: Option<&str>, protocol: &str, port: u16) -> PortSpec {
    PortSpec {
        name: name.map(str::to_string),
        protocol: protocol.to_string(),
        port,
    }
}

fn service_resolved(status: ConditionStatus) -> Condition {
    Condition {
        type_: "ServiceResolved".into(),
        status,
        reason: match status {
            ConditionStatus::True => "Resolved".into(),
            ConditionStatus::False => "ServiceNotHeadless".into(),
        },
        message: String::new(),
    }
}

/// A Ready, published identity of `set`.
fn ready(set: &str, ordinal: i32, addresses: Vec<IpAddr>) -> Identity {
    let pod = format!("{set}-{ordinal}");
    Identity {
        ordinal,
        hostname: pod.clone(),
        pod,
        addresses,
        state: IdentityState::Ready,
        published: true,
        node: Some("node-a".into()),
        revision: Some(format!("{set}-6d8f5c")),
        claims: vec![format!("www-{set}-{ordinal}")],
    }
}

/// `mk_statefulset("web", "nginx", 3)`: namespace `default`, ordinals `[0, 3)`, every ordinal
/// Ready at `192.0.2.<10 + ordinal>`, one port `web/TCP` with target port 8080, Service resolved.
fn mk_statefulset(set: &str, service: &str, replicas: i32) -> IdentityTable {
    IdentityTable {
        namespace: "default".into(),
        stateful_set: set.into(),
        service: service.into(),
        ordinals: Ordinals { start: 0, replicas },
        pod_management_policy: "OrderedReady".into(),
        publish_not_ready_addresses: false,
        srv_priority: SrvPriority::Uniform,
        ports: vec![port(Some("web"), "TCP", 8080)],
        identities: (0..replicas).map(|o| ready(set, o, vec![v4(o)])).collect(),
        conditions: vec![service_resolved(ConditionStatus::True)],
    }
}

/// Adds `2001:db8::<0x10 + ordinal>` to every identity.
fn dual_stack(mut t: IdentityTable) -> IdentityTable {
    for i in &mut t.identities {
        i.addresses.push(v6(i.ordinal));
    }
    t
}

/// Marks `ordinal` NotReady and unpublished (the pod keeps its IP).
fn not_ready(mut t: IdentityTable, ordinal: i32) -> IdentityTable {
    let i = identity_mut(&mut t, ordinal);
    i.state = IdentityState::NotReady;
    i.published = false;
    t
}

/// Marks `ordinal` Missing: no pod, no address.
fn missing(mut t: IdentityTable, ordinal: i32) -> IdentityTable {
    let i = identity_mut(&mut t, ordinal);
    i.state = IdentityState::Missing;
    i.published = false;
    i.addresses.clear();
    i.node = None;
    i.revision = None;
    t
}

/// Appends a condemned identity (ordinal outside the declared range, scale-down in progress).
fn condemned(mut t: IdentityTable, ordinal: i32, published: bool) -> IdentityTable {
    let mut i = ready(&t.stateful_set, ordinal, vec![v4(ordinal)]);
    i.state = IdentityState::Condemned;
    i.published = published;
    t.identities.push(i);
    t
}

fn with_condition(mut t: IdentityTable, status: ConditionStatus) -> IdentityTable {
    t.conditions = vec![service_resolved(status)];
    t
}

fn identity_mut(t: &mut IdentityTable, ordinal: i32) -> &mut Identity {
    t.identities
        .iter_mut()
        .find(|i| i.ordinal == ordinal)
        .expect("builder: no such ordinal")
}

fn namespaces(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn snapshot(tables: Vec<IdentityTable>) -> Snapshot {
    build(&tables, &namespaces(&["default"]), &cfg(), 1, SERIAL)
}

// ---------------------------------------------------------------------------------------------
// Lookup helpers
// ---------------------------------------------------------------------------------------------

fn lname(name: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(name).unwrap())
}

/// The record set at `name` (computed per lookup; leaked so tests can hold it like a borrow).
fn found(snap: &Snapshot, name: &str, rtype: RecordType) -> &'static RrSet {
    match snap.lookup(&lname(name), rtype) {
        Lookup::Found(_, rrset) => Box::leak(Box::new(rrset)),
        other => panic!("{name} {rtype}: expected records, got {other:?}"),
    }
}

/// Every existing name with its record sets.
fn entries(snap: &Snapshot) -> Vec<(LowerName, Vec<RrSet>)> {
    snap.all_names()
        .into_iter()
        .map(|name| {
            let sets = [
                RecordType::A,
                RecordType::AAAA,
                RecordType::SRV,
                RecordType::TXT,
                RecordType::PTR,
                RecordType::SOA,
                RecordType::NS,
            ]
            .into_iter()
            .filter_map(|t| match snap.lookup(&name, t) {
                Lookup::Found(_, rrset) => Some(rrset),
                _ => None,
            })
            .collect();
            (name, sets)
        })
        .collect()
}

fn assert_nodata(snap: &Snapshot, name: &str, rtype: RecordType) {
    match snap.lookup(&lname(name), rtype) {
        Lookup::NoData(_) => {}
        other => panic!("{name} {rtype}: expected NODATA, got {other:?}"),
    }
}

fn assert_nxdomain<'s>(snap: &'s Snapshot, name: &str, rtype: RecordType) -> &'s Zone {
    match snap.lookup(&lname(name), rtype) {
        Lookup::NxDomain(zone) => zone,
        other => panic!("{name} {rtype}: expected NXDOMAIN, got {other:?}"),
    }
}

fn addresses(rrset: impl std::borrow::Borrow<RrSet>) -> BTreeSet<IpAddr> {
    let rrset = rrset.borrow();
    rrset
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("not an address record: {other:?}"),
        })
        .collect()
}

/// `(priority, weight, port, target)` of every SRV answer, sorted.
fn srvs(rrset: impl std::borrow::Borrow<RrSet>) -> Vec<(u16, u16, u16, String)> {
    let rrset = rrset.borrow();
    let mut v: Vec<_> = rrset
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => (s.priority, s.weight, s.port, s.target.to_string()),
            other => panic!("not an SRV record: {other:?}"),
        })
        .collect();
    v.sort();
    v
}

/// `(owner, address)` of every glue record, sorted.
fn glue(rrset: impl std::borrow::Borrow<RrSet>) -> BTreeSet<(String, IpAddr)> {
    let rrset = rrset.borrow();
    rrset
        .additionals
        .iter()
        .map(|r| {
            let ip = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("glue that is not an address: {other:?}"),
            };
            (r.name.to_string(), ip)
        })
        .collect()
}

fn txt_strings(rrset: impl std::borrow::Borrow<RrSet>) -> Vec<String> {
    let rrset = rrset.borrow();
    rrset
        .answers
        .iter()
        .flat_map(|r| match &r.data {
            RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect::<Vec<_>>(),
            other => panic!("not a TXT record: {other:?}"),
        })
        .collect()
}

fn host(h: &str) -> String {
    format!("{h}.{SVC}")
}

/// The reverse name of an IPv6 address, written out nibble by nibble.
fn ip6_arpa(addr: Ipv6Addr) -> String {
    let mut s = String::new();
    for byte in addr.octets().iter().rev() {
        s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
    }
    s.push_str("ip6.arpa.");
    s
}

fn weight(n: usize) -> u16 {
    (100 / n).max(1) as u16
}

// ---------------------------------------------------------------------------------------------
// Service A / AAAA
// ---------------------------------------------------------------------------------------------

#[test]
fn service_a_aaaa_answer_every_published_address() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 3))]);
    let a = found(&snap, SVC, RecordType::A);
    assert_eq!(addresses(a), [v4(0), v4(1), v4(2)].into());
    assert_eq!(a.answers.len(), 3);
    assert!(a.answers.iter().all(|r| r.ttl == TTL));
    let aaaa = found(&snap, SVC, RecordType::AAAA);
    assert_eq!(addresses(aaaa), [v6(0), v6(1), v6(2)].into());
    assert_eq!(aaaa.answers.len(), 3);
}

#[test]
fn service_a_skips_unpublished_identities() {
    let snap = snapshot(vec![not_ready(mk_statefulset("web", "nginx", 3), 1)]);
    assert_eq!(
        addresses(found(&snap, SVC, RecordType::A)),
        [v4(0), v4(2)].into()
    );
}

#[test]
fn service_a_deduplicates_an_address_shared_by_two_identities() {
    let mut t = mk_statefulset("web", "nginx", 3);
    identity_mut(&mut t, 2).addresses = vec![v4(0)];
    let snap = snapshot(vec![t]);
    let a = found(&snap, SVC, RecordType::A);
    assert_eq!(a.answers.len(), 2);
    assert_eq!(addresses(a), [v4(0), v4(1)].into());
}

/// Two StatefulSets (`web`, `db`) governed by one Service `nginx`.
fn shared_service() -> Vec<IdentityTable> {
    let web = mk_statefulset("web", "nginx", 3);
    let mut db = mk_statefulset("db", "nginx", 2);
    db.ports = vec![port(Some("web"), "TCP", 9080)];
    identity_mut(&mut db, 0).addresses = vec![ip("198.51.100.10")];
    // Same address as web-0: answered once at the Service.
    identity_mut(&mut db, 1).addresses = vec![v4(0)];
    vec![web, db]
}

#[test]
fn two_sets_sharing_a_service_answer_together_deduplicated() {
    let snap = snapshot(shared_service());
    let a = found(&snap, SVC, RecordType::A);
    assert_eq!(a.answers.len(), 4);
    assert_eq!(
        addresses(a),
        [v4(0), v4(1), v4(2), ip("198.51.100.10")].into()
    );
    assert_eq!(
        addresses(found(&snap, &host("db-0"), RecordType::A)),
        [ip("198.51.100.10")].into()
    );
    assert_eq!(
        addresses(found(&snap, &host("web-0"), RecordType::A)),
        [v4(0)].into()
    );

    // SRV over both sets: five targets, each with its own set's target port.
    let w = weight(5);
    assert_eq!(
        srvs(found(&snap, SVC, RecordType::SRV)),
        vec![
            (0, w, 8080, host("web-0")),
            (0, w, 8080, host("web-1")),
            (0, w, 8080, host("web-2")),
            (0, w, 9080, host("db-0")),
            (0, w, 9080, host("db-1")),
        ]
    );
    assert_eq!(
        srvs(found(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV)).len(),
        5
    );
}

// ---------------------------------------------------------------------------------------------
// Per-identity A / AAAA
// ---------------------------------------------------------------------------------------------

#[test]
fn identity_a_aaaa_answer_that_identity_only() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 3))]);
    for o in 0..3 {
        let name = host(&format!("web-{o}"));
        assert_eq!(
            addresses(found(&snap, &name, RecordType::A)),
            [v4(o)].into()
        );
        assert_eq!(
            addresses(found(&snap, &name, RecordType::AAAA)),
            [v6(o)].into()
        );
    }
}

#[test]
fn identity_aaaa_on_a_single_stack_identity_is_nodata() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 1)]);
    assert_nodata(&snap, &host("web-0"), RecordType::AAAA);
}

#[test]
fn not_ready_identity_published_under_publish_not_ready_addresses_answers() {
    let mut t = not_ready(mk_statefulset("web", "nginx", 2), 1);
    t.publish_not_ready_addresses = true;
    identity_mut(&mut t, 1).published = true;
    let snap = snapshot(vec![t]);
    assert_eq!(
        addresses(found(&snap, &host("web-1"), RecordType::A)),
        [v4(1)].into()
    );
    assert_eq!(
        addresses(found(&snap, SVC, RecordType::A)),
        [v4(0), v4(1)].into()
    );
}

// ---------------------------------------------------------------------------------------------
// SRV
// ---------------------------------------------------------------------------------------------

#[test]
fn port_proto_srv_answers_one_record_per_published_identity() {
    let snap = snapshot(vec![not_ready(mk_statefulset("web", "nginx", 4), 3)]);
    let w = weight(3);
    assert_eq!(w, 33);
    let expected = vec![
        (0, w, 8080, host("web-0")),
        (0, w, 8080, host("web-1")),
        (0, w, 8080, host("web-2")),
    ];
    assert_eq!(
        srvs(found(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV)),
        expected
    );
    // The form without underscores parses too, as in CoreDNS.
    assert_eq!(
        srvs(found(&snap, &format!("web.tcp.{SVC}"), RecordType::SRV)),
        expected
    );
}

#[test]
fn port_proto_srv_matches_port_name_and_protocol_case_insensitively() {
    let mut t = mk_statefulset("web", "nginx", 2);
    t.ports = vec![port(Some("Web"), "TCP", 8080)];
    let snap = snapshot(vec![t]);
    for name in [
        format!("_web._tcp.{SVC}"),
        format!("_WEB._Tcp.{SVC}"),
        format!("web.tcp.{SVC}"),
        format!("Web.TCP.{SVC}"),
    ] {
        assert_eq!(
            found(&snap, &name, RecordType::SRV).answers.len(),
            2,
            "{name}"
        );
    }
}

#[test]
fn port_proto_srv_with_a_mismatched_port_or_protocol_is_nxdomain() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    for name in [
        format!("_http._tcp.{SVC}"),
        format!("_web._udp.{SVC}"),
        format!("_web._sctp.{SVC}"),
        format!("http.tcp.{SVC}"),
        format!("web.udp.{SVC}"),
        format!("_udp.{SVC}"),
    ] {
        assert_nxdomain(&snap, &name, RecordType::SRV);
    }
}

#[test]
fn port_proto_srv_picks_the_matching_port_of_several() {
    let mut t = mk_statefulset("web", "nginx", 2);
    t.ports = vec![
        port(Some("web"), "TCP", 8080),
        port(Some("metrics"), "TCP", 9090),
        port(Some("dns"), "UDP", 5353),
    ];
    let snap = snapshot(vec![t]);
    let ports = |name: &str| -> BTreeSet<u16> {
        srvs(found(&snap, name, RecordType::SRV))
            .into_iter()
            .map(|s| s.2)
            .collect()
    };
    assert_eq!(ports(&format!("_web._tcp.{SVC}")), [8080].into());
    assert_eq!(ports(&format!("_metrics._tcp.{SVC}")), [9090].into());
    assert_eq!(ports(&format!("_dns._udp.{SVC}")), [5353].into());
    assert_nxdomain(&snap, &format!("_dns._tcp.{SVC}"), RecordType::SRV);
}

#[test]
fn service_srv_covers_every_port_named_or_not() {
    let mut t = mk_statefulset("web", "nginx", 3);
    t.ports = vec![port(Some("web"), "TCP", 8080), port(None, "TCP", 9090)];
    let snap = snapshot(vec![t]);
    let got = srvs(found(&snap, SVC, RecordType::SRV));
    let w = weight(6);
    assert_eq!(w, 16);
    let mut expected = Vec::new();
    for o in 0..3 {
        expected.push((0, w, 8080, host(&format!("web-{o}"))));
        expected.push((0, w, 9090, host(&format!("web-{o}"))));
    }
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn identity_srv_answers_its_ports_with_itself_as_target() {
    let mut t = dual_stack(mk_statefulset("web", "nginx", 3));
    t.ports = vec![port(Some("web"), "TCP", 8080), port(None, "TCP", 9090)];
    let snap = snapshot(vec![t]);
    let rrset = found(&snap, &host("web-1"), RecordType::SRV);
    assert_eq!(
        srvs(rrset),
        vec![(0, 50, 8080, host("web-1")), (0, 50, 9090, host("web-1"))]
    );
    assert_eq!(
        glue(rrset),
        [(host("web-1"), v4(1)), (host("web-1"), v6(1))].into()
    );
}

#[test]
fn srv_weight_is_100_over_the_records_in_the_answer() {
    // 3 pods: 33.
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 3)]);
    for name in [SVC.to_string(), format!("_web._tcp.{SVC}")] {
        let rrset = found(&snap, &name, RecordType::SRV);
        assert!(srvs(rrset).iter().all(|s| s.1 == 33), "{name}");
    }
    assert!(
        srvs(found(&snap, &host("web-0"), RecordType::SRV))
            .iter()
            .all(|s| s.1 == 100)
    );

    // 150 pods: max(1, 0) = 1.
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 150)]);
    for name in [SVC.to_string(), format!("_web._tcp.{SVC}")] {
        let rrset = found(&snap, &name, RecordType::SRV);
        assert_eq!(rrset.answers.len(), 150);
        assert!(srvs(rrset).iter().all(|s| s.1 == 1), "{name}");
    }
}

#[test]
fn srv_weight_counts_records_not_addresses() {
    // CoreDNS counts addresses (two dual-stack pods -> 4 -> 25); petdns counts SRV records.
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 2))]);
    for name in [SVC.to_string(), format!("_web._tcp.{SVC}")] {
        let rrset = found(&snap, &name, RecordType::SRV);
        assert_eq!(rrset.answers.len(), 2);
        assert!(srvs(rrset).iter().all(|s| s.1 == 50), "{name}");
    }
}

/// Regression: a Service with the same target port over two protocols (DNS on 53/UDP and
/// 53/TCP) gives identical SRV records at the Service and identity names; they collapse into
/// one, and the weight must count the records left, not the ports.
#[test]
fn srv_weight_counts_records_left_after_duplicate_target_ports_collapse() {
    let mut t = mk_statefulset("web", "nginx", 3);
    t.ports = vec![
        port(Some("dns"), "UDP", 53),
        port(Some("dns-tcp"), "TCP", 53),
    ];
    let snap = snapshot(vec![t]);

    let svc = found(&snap, SVC, RecordType::SRV);
    assert_eq!(svc.answers.len(), 3);
    assert!(srvs(svc).iter().all(|s| s.1 == 33), "{:?}", srvs(svc));

    let one = found(&snap, &host("web-0"), RecordType::SRV);
    assert_eq!(one.answers.len(), 1);
    assert_eq!(srvs(one), vec![(0, 100, 53, host("web-0"))]);

    let udp = found(&snap, &format!("_dns._udp.{SVC}"), RecordType::SRV);
    assert!(srvs(udp).iter().all(|s| s.1 == 33));
}

#[test]
fn every_srv_answer_has_weight_100_over_its_record_count() {
    let mut t = dual_stack(mk_statefulset("web", "nginx", 7));
    t.ports = vec![
        port(Some("web"), "TCP", 8080),
        port(None, "TCP", 8081),
        port(Some("dns"), "UDP", 53),
        port(Some("dns-tcp"), "TCP", 53),
    ];
    // `db` shares the Service (two sets cannot share a name, so `web` comes from `t`).
    let mut tables = vec![t];
    tables.extend(shared_service().into_iter().skip(1));
    let snap = snapshot(tables);
    let mut checked = 0;
    for (name, sets) in entries(&snap) {
        if let Some(rrset) = sets.iter().find(|r| r.rtype == RecordType::SRV) {
            let w = weight(rrset.answers.len());
            assert!(
                srvs(rrset).iter().all(|s| s.1 == w),
                "{name}: {:?}",
                srvs(rrset)
            );
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn srv_priority_is_zero_by_default() {
    let mut t = mk_statefulset("web", "nginx", 3);
    t.ordinals.start = 5;
    t.identities = (5..8).map(|o| ready("web", o, vec![v4(o)])).collect();
    let snap = snapshot(vec![t]);
    assert!(
        srvs(found(&snap, SVC, RecordType::SRV))
            .iter()
            .all(|s| s.0 == 0)
    );
}

#[test]
fn srv_priority_ordinal_is_the_rank_from_start() {
    let mut t = mk_statefulset("web", "nginx", 3);
    t.ordinals.start = 5;
    t.srv_priority = SrvPriority::Ordinal;
    t.identities = (5..8).map(|o| ready("web", o, vec![v4(o)])).collect();
    let snap = snapshot(vec![t]);
    let expected = vec![
        (0, 33, 8080, host("web-5")),
        (1, 33, 8080, host("web-6")),
        (2, 33, 8080, host("web-7")),
    ];
    assert_eq!(srvs(found(&snap, SVC, RecordType::SRV)), expected);
    assert_eq!(
        srvs(found(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV)),
        expected
    );
    assert_eq!(
        srvs(found(&snap, &host("web-6"), RecordType::SRV)),
        vec![(1, 100, 8080, host("web-6"))]
    );
}

#[test]
fn srv_answers_carry_glue_for_every_target() {
    let snap = snapshot(vec![not_ready(
        dual_stack(mk_statefulset("web", "nginx", 3)),
        1,
    )]);
    let expected: BTreeSet<_> = [0, 2]
        .iter()
        .flat_map(|o| {
            let h = host(&format!("web-{o}"));
            [(h.clone(), v4(*o)), (h, v6(*o))]
        })
        .collect();
    for name in [
        SVC.to_string(),
        format!("_web._tcp.{SVC}"),
        format!("web.tcp.{SVC}"),
    ] {
        let rrset = found(&snap, &name, RecordType::SRV);
        assert_eq!(glue(rrset), expected, "{name}");
        assert_eq!(rrset.additionals.len(), 4, "{name}");
        assert!(rrset.additionals.iter().all(|r| r.ttl == TTL));
    }
}

// ---------------------------------------------------------------------------------------------
// PTR and the reverse zones
// ---------------------------------------------------------------------------------------------

#[test]
fn ptr_answers_the_identity_for_ipv4_and_ipv6_addresses() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 2))]);
    let targets = |rrset: &RrSet| -> Vec<String> {
        rrset
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(p) => p.0.to_string(),
                other => panic!("not a PTR: {other:?}"),
            })
            .collect()
    };
    assert_eq!(
        targets(found(&snap, "11.2.0.192.in-addr.arpa.", RecordType::PTR)),
        vec![host("web-1")]
    );
    let IpAddr::V6(addr) = v6(1) else {
        unreachable!()
    };
    let reverse = ip6_arpa(addr);
    assert!(reverse.starts_with("1.1.0.0.0.0.0.0"));
    assert!(reverse.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."));
    assert_eq!(
        targets(found(&snap, &reverse, RecordType::PTR)),
        vec![host("web-1")]
    );
}

#[test]
fn ptr_is_only_answered_for_published_addresses() {
    let snap = snapshot(vec![not_ready(mk_statefulset("web", "nginx", 2), 1)]);
    found(&snap, "10.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_nxdomain(&snap, "11.2.0.192.in-addr.arpa.", RecordType::PTR);
}

#[test]
fn unknown_reverse_name_is_nxdomain_in_the_reverse_zone() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 2))]);
    let zone = assert_nxdomain(&snap, "99.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(zone.origin, lname("in-addr.arpa."));
    assert_eq!(zone.soa.name, Name::from_ascii("in-addr.arpa.").unwrap());
    let RData::SOA(soa) = &zone.soa.data else {
        panic!("zone SOA is not an SOA")
    };
    assert_eq!(
        soa.mname,
        Name::from_ascii("ns.dns.cluster.local.").unwrap()
    );
    assert_eq!(soa.minimum, NEGATIVE_TTL);

    let zone = assert_nxdomain(&snap, "9.9.9.9.ip6.arpa.", RecordType::PTR);
    assert_eq!(zone.origin, lname("ip6.arpa."));
    let zone = assert_nxdomain(&snap, "1.0.51.198.in-addr.arpa.", RecordType::PTR);
    assert_eq!(zone.origin, lname("in-addr.arpa."));
}

#[test]
fn parents_of_reverse_names_are_empty_non_terminals() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 1))]);
    for name in [
        "2.0.192.in-addr.arpa.",
        "0.192.in-addr.arpa.",
        "192.in-addr.arpa.",
        "8.b.d.0.1.0.0.2.ip6.arpa.",
        "2.ip6.arpa.",
    ] {
        assert_nodata(&snap, name, RecordType::PTR);
    }
}

// ---------------------------------------------------------------------------------------------
// Zone apex, dns-version, ns.dns
// ---------------------------------------------------------------------------------------------

#[test]
fn dns_version_txt_is_the_schema_version() {
    let snap = snapshot(vec![]);
    let rrset = found(&snap, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(SCHEMA_VERSION, "1.1.0");
    assert_eq!(txt_strings(rrset), vec!["1.1.0".to_string()]);
}

#[test]
fn apex_soa_has_the_records_md_fields() {
    let snap = snapshot(vec![]);
    let rrset = found(&snap, ZONE, RecordType::SOA);
    assert_eq!(rrset.answers.len(), 1);
    let record = &rrset.answers[0];
    assert_eq!(record.ttl, NEGATIVE_TTL);
    let RData::SOA(soa) = &record.data else {
        panic!("not an SOA")
    };
    assert_eq!(
        soa.mname,
        Name::from_ascii("ns.dns.cluster.local.").unwrap()
    );
    assert_eq!(
        soa.rname,
        Name::from_ascii("hostmaster.cluster.local.").unwrap()
    );
    assert_eq!(soa.serial, SERIAL);
    assert_eq!(soa.refresh, 7200);
    assert_eq!(soa.retry, 1800);
    assert_eq!(soa.expire, 86400);
    assert_eq!(soa.minimum, NEGATIVE_TTL);

    // The SOA negative answers carry is the same record.
    let zone = snap.zone_of(&lname(ZONE)).unwrap();
    assert_eq!(zone.soa.ttl, NEGATIVE_TTL);
    assert_eq!(&zone.soa.data, &record.data);
}

#[test]
fn apex_ns_is_ns_dns_with_its_addresses() {
    let snap = snapshot(vec![]);
    let rrset = found(&snap, ZONE, RecordType::NS);
    assert_eq!(rrset.answers.len(), 1);
    let RData::NS(ns) = &rrset.answers[0].data else {
        panic!("not an NS")
    };
    assert_eq!(ns.0, Name::from_ascii("ns.dns.cluster.local.").unwrap());
    assert_eq!(
        glue(rrset),
        [
            ("ns.dns.cluster.local.".to_string(), ip("192.0.2.53")),
            ("ns.dns.cluster.local.".to_string(), ip("2001:db8::53")),
        ]
        .into()
    );
    assert_eq!(
        addresses(found(&snap, "ns.dns.cluster.local.", RecordType::A)),
        [ip("192.0.2.53")].into()
    );
    assert_eq!(
        addresses(found(&snap, "ns.dns.cluster.local.", RecordType::AAAA)),
        [ip("2001:db8::53")].into()
    );
    assert_nodata(&snap, "dns.cluster.local.", RecordType::A);
}

// ---------------------------------------------------------------------------------------------
// Existence: NODATA, NXDOMAIN, REFUSED, ANY
// ---------------------------------------------------------------------------------------------

#[test]
fn existing_namespace_and_svc_names_are_nodata() {
    let snap = build(
        &[],
        &namespaces(&["default", "kube-system"]),
        &cfg(),
        1,
        SERIAL,
    );
    for name in [
        "default.svc.cluster.local.",
        "kube-system.svc.cluster.local.",
        "svc.cluster.local.",
    ] {
        assert_nodata(&snap, name, RecordType::A);
        assert_nodata(&snap, name, RecordType::SRV);
    }
}

#[test]
fn non_existing_namespace_is_nxdomain() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    let zone = assert_nxdomain(&snap, "nope.svc.cluster.local.", RecordType::A);
    assert_eq!(zone.origin, lname(ZONE));
    assert_eq!(zone.soa.name, Name::from_ascii(ZONE).unwrap());
    assert_nxdomain(&snap, "nginx.nope.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&snap, "web-0.nginx.nope.svc.cluster.local.", RecordType::A);
}

#[test]
fn names_that_do_not_exist_are_nxdomain() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    for name in [
        "other.default.svc.cluster.local.",
        "web-2.nginx.default.svc.cluster.local.",
        "x.web-0.nginx.default.svc.cluster.local.",
        "nope.cluster.local.",
    ] {
        assert_nxdomain(&snap, name, RecordType::A);
    }
}

#[test]
fn other_types_on_existing_names_are_nodata() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    assert_nodata(&snap, &host("web-0"), RecordType::MX);
    assert_nodata(&snap, &host("web-0"), RecordType::CNAME);
    assert_nodata(&snap, SVC, RecordType::TXT);
    assert_nodata(&snap, SVC, RecordType::PTR);
    assert_nodata(&snap, &format!("_web._tcp.{SVC}"), RecordType::A);
    assert_nodata(&snap, ZONE, RecordType::A);
    assert_nodata(&snap, "dns-version.cluster.local.", RecordType::A);
}

#[test]
fn names_outside_every_zone_are_refused() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    for name in [
        "example.com.",
        "local.",
        "arpa.",
        ".",
        "web-0.nginx.default.svc.cluster.example.",
    ] {
        assert!(
            matches!(snap.lookup(&lname(name), RecordType::A), Lookup::Refused),
            "{name}"
        );
    }
}

#[test]
fn any_on_an_existing_name_is_answered_minimally() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    for name in [
        SVC.to_string(),
        host("web-0"),
        ZONE.to_string(),
        format!("_tcp.{SVC}"),
    ] {
        assert!(
            matches!(
                snap.lookup(&lname(&name), RecordType::ANY),
                Lookup::AnyExists(_)
            ),
            "{name}"
        );
    }
    assert_nxdomain(&snap, &host("web-9"), RecordType::ANY);
}

#[test]
fn empty_non_terminals_are_nodata_not_nxdomain() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    for name in [
        format!("_tcp.{SVC}"),
        format!("tcp.{SVC}"),
        "default.svc.cluster.local.".to_string(),
        "svc.cluster.local.".to_string(),
        "dns.cluster.local.".to_string(),
    ] {
        assert_nodata(&snap, &name, RecordType::A);
        assert_nodata(&snap, &name, RecordType::SRV);
    }
}

#[test]
fn every_existing_name_has_its_ancestors_up_to_its_zone() {
    let mut tables = vec![dual_stack(mk_statefulset("web", "nginx", 3))];
    tables.extend(shared_service().into_iter().skip(1));
    let snap = snapshot(tables);
    let all = snap.all_names();
    for name in &all {
        let zone = snap.zone_of(name).expect("every name is in a zone");
        let mut current = Name::from(name.clone());
        while current.num_labels() > zone.origin.num_labels() {
            current = current.base_name();
            assert!(
                all.contains(&LowerName::new(&current)),
                "{current} (parent of {name}) is missing"
            );
        }
    }
}

#[test]
fn nxdomain_versus_nodata_is_one_map_lookup() {
    let snap = snapshot(shared_service());
    let all = snap.all_names();
    let probes = [
        SVC.to_string(),
        host("web-0"),
        host("web-7"),
        format!("_tcp.{SVC}"),
        format!("_web._tcp.{SVC}"),
        format!("_web._udp.{SVC}"),
        "default.svc.cluster.local.".into(),
        "nope.svc.cluster.local.".into(),
        "10.2.0.192.in-addr.arpa.".into(),
        "99.2.0.192.in-addr.arpa.".into(),
        "2.0.192.in-addr.arpa.".into(),
    ];
    for probe in &probes {
        let key = lname(probe);
        let exists = all.contains(&key);
        for rtype in [RecordType::A, RecordType::MX, RecordType::ANY] {
            let nx = matches!(snap.lookup(&key, rtype), Lookup::NxDomain(_));
            assert_eq!(nx, !exists, "{probe} {rtype}");
        }
    }
    // And every key of the map answers something other than NXDOMAIN.
    for key in &all {
        assert!(!matches!(
            snap.lookup(key, RecordType::NULL),
            Lookup::NxDomain(_)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// petdns: declared names never NXDOMAIN
// ---------------------------------------------------------------------------------------------

#[test]
fn declared_names_with_nothing_published_are_nodata() {
    let t = (0..3).fold(mk_statefulset("web", "nginx", 3), not_ready);
    let snap = snapshot(vec![t]);
    for rtype in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
        assert_nodata(&snap, SVC, rtype);
        assert_nodata(&snap, &host("web-0"), rtype);
        assert_nodata(&snap, &host("web-2"), rtype);
    }
    assert_nodata(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV);
    assert_nodata(&snap, &format!("web.tcp.{SVC}"), RecordType::SRV);
    // Outside the declared range: NXDOMAIN.
    assert_nxdomain(&snap, &host("web-3"), RecordType::A);
    // Nothing published, so nothing in reverse.
    assert_nxdomain(&snap, "10.2.0.192.in-addr.arpa.", RecordType::PTR);
}

#[test]
fn missing_identity_is_nodata() {
    let snap = snapshot(vec![missing(mk_statefulset("web", "nginx", 2), 1)]);
    assert_nodata(&snap, &host("web-1"), RecordType::A);
    assert_eq!(
        txt_strings(found(&snap, &host("web-1"), RecordType::TXT)),
        vec!["ordinal=1", "set=web", "state=Missing", "claims=www-web-1"]
    );
}

#[test]
fn set_scaled_to_zero_has_no_names() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 0)]);
    assert_nxdomain(&snap, SVC, RecordType::A);
    assert_nxdomain(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV);
    assert_nodata(&snap, "default.svc.cluster.local.", RecordType::A);
}

// ---------------------------------------------------------------------------------------------
// Identity TXT, condemned identities, unresolved Services
// ---------------------------------------------------------------------------------------------

#[test]
fn identity_txt_answers_its_facts() {
    let snap = snapshot(vec![not_ready(mk_statefulset("web", "nginx", 2), 1)]);
    assert_eq!(
        txt_strings(found(&snap, &host("web-0"), RecordType::TXT)),
        vec![
            "ordinal=0",
            "set=web",
            "state=Ready",
            "revision=web-6d8f5c",
            "claims=www-web-0",
        ]
    );
    assert_eq!(
        txt_strings(found(&snap, &host("web-1"), RecordType::TXT)),
        vec![
            "ordinal=1",
            "set=web",
            "state=NotReady",
            "revision=web-6d8f5c",
            "claims=www-web-1",
        ]
    );
}

#[test]
fn condemned_identity_answers_while_published() {
    let snap = snapshot(vec![condemned(mk_statefulset("web", "nginx", 2), 2, true)]);
    assert_eq!(
        addresses(found(&snap, &host("web-2"), RecordType::A)),
        [v4(2)].into()
    );
    assert_eq!(
        addresses(found(&snap, SVC, RecordType::A)),
        [v4(0), v4(1), v4(2)].into()
    );
    assert_eq!(found(&snap, SVC, RecordType::SRV).answers.len(), 3);
    assert!(
        txt_strings(found(&snap, &host("web-2"), RecordType::TXT))
            .contains(&"state=Condemned".to_string())
    );
    found(&snap, "12.2.0.192.in-addr.arpa.", RecordType::PTR);
}

#[test]
fn condemned_identity_is_gone_once_unpublished() {
    let snap = snapshot(vec![condemned(mk_statefulset("web", "nginx", 2), 2, false)]);
    assert_nxdomain(&snap, &host("web-2"), RecordType::A);
    assert_nxdomain(&snap, &host("web-2"), RecordType::TXT);
    assert_eq!(
        addresses(found(&snap, SVC, RecordType::A)),
        [v4(0), v4(1)].into()
    );
    assert_eq!(found(&snap, SVC, RecordType::SRV).answers.len(), 2);
    assert_nxdomain(&snap, "12.2.0.192.in-addr.arpa.", RecordType::PTR);
}

#[test]
fn table_with_service_resolved_false_contributes_no_names() {
    let t = with_condition(mk_statefulset("web", "nginx", 2), ConditionStatus::False);
    let snap = snapshot(vec![t]);
    assert_nxdomain(&snap, SVC, RecordType::A);
    assert_nxdomain(&snap, &host("web-0"), RecordType::A);
    assert_nxdomain(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV);
    assert_nxdomain(&snap, "10.2.0.192.in-addr.arpa.", RecordType::PTR);
    // The namespace still exists.
    assert_nodata(&snap, "default.svc.cluster.local.", RecordType::A);
}

#[test]
fn table_without_a_service_resolved_condition_contributes_no_names() {
    let mut t = mk_statefulset("web", "nginx", 2);
    t.conditions.clear();
    let snap = snapshot(vec![t]);
    assert_nxdomain(&snap, SVC, RecordType::A);
    assert_nxdomain(&snap, &host("web-0"), RecordType::A);
}

#[test]
fn unresolved_set_sharing_a_service_leaves_only_the_resolved_one() {
    let mut tables = shared_service();
    tables[0] = with_condition(tables[0].clone(), ConditionStatus::False);
    let snap = snapshot(tables);
    assert_nxdomain(&snap, &host("web-1"), RecordType::A);
    assert_eq!(
        addresses(found(&snap, SVC, RecordType::A)),
        [ip("198.51.100.10"), v4(0)].into()
    );
    assert_eq!(found(&snap, SVC, RecordType::SRV).answers.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Case, placeholder, encoded sizes, scale
// ---------------------------------------------------------------------------------------------

#[test]
fn lookup_is_case_insensitive() {
    let snap = snapshot(vec![mk_statefulset("web", "nginx", 2)]);
    let name = lname("WEB-0.Nginx.DEFAULT.svc.Cluster.Local.");
    match snap.lookup(&name, RecordType::A) {
        Lookup::Found(_, rrset) => assert_eq!(addresses(&rrset), [v4(0)].into()),
        other => panic!("expected records, got {other:?}"),
    }
    assert!(matches!(
        snap.lookup(
            &lname("_WEB._TCP.nginx.default.SVC.cluster.local."),
            RecordType::SRV
        ),
        Lookup::Found(..)
    ));
    assert!(matches!(
        snap.lookup(&lname("10.2.0.192.IN-ADDR.ARPA."), RecordType::PTR),
        Lookup::Found(..)
    ));
}

#[test]
fn placeholder_is_not_loaded_inside_the_zones() {
    let snap = placeholder(&cfg());
    for name in [
        SVC,
        ZONE,
        "dns-version.cluster.local.",
        "10.2.0.192.in-addr.arpa.",
    ] {
        assert!(
            matches!(
                snap.lookup(&lname(name), RecordType::A),
                Lookup::NotLoaded(_)
            ),
            "{name}"
        );
    }
    assert!(matches!(
        snap.lookup(&lname("example.com."), RecordType::A),
        Lookup::Refused
    ));
}

/// Encodes a full response (question, answers, additionals) with hickory and checks the sizes
/// the index measured.
fn assert_encoded_lens(name: &LowerName, rrset: &RrSet) {
    let mut message = Message::response(0, OpCode::Query);
    message.add_query(Query::query(Name::from(name.clone()), rrset.rtype));
    let question_only = message.to_vec().unwrap().len();
    message.add_answers(rrset.answers.iter().cloned());
    let with_answers = message.to_vec().unwrap().len();
    message.add_additionals(rrset.additionals.iter().cloned());
    let full = message.to_vec().unwrap().len();
    assert_eq!(
        with_answers - question_only,
        rrset.answers_len,
        "{name} {}: answers",
        rrset.rtype
    );
    assert_eq!(
        full - with_answers,
        rrset.additionals_len,
        "{name} {}: additionals",
        rrset.rtype
    );
}

#[test]
fn answers_len_and_additionals_len_match_the_encoded_response() {
    let mut t = dual_stack(mk_statefulset("web", "nginx", 5));
    t.ports = vec![
        port(Some("web"), "TCP", 8080),
        port(None, "TCP", 9090),
        port(Some("dns"), "UDP", 53),
    ];
    let mut tables = vec![t];
    tables.extend(shared_service().into_iter().skip(1));
    let snap = snapshot(tables);
    let mut checked = 0;
    for (name, sets) in entries(&snap) {
        for rrset in &sets {
            assert_encoded_lens(&name, rrset);
            checked += 1;
        }
    }
    // SOA, NS at three apexes, dns-version, ns.dns, the set's names, PTRs...
    assert!(checked > 40, "{checked}");
}

#[test]
fn answers_len_matches_for_a_large_srv_answer() {
    let snap = snapshot(vec![dual_stack(mk_statefulset("web", "nginx", 150))]);
    for name in [SVC.to_string(), format!("_web._tcp.{SVC}")] {
        for rtype in [RecordType::SRV, RecordType::A, RecordType::AAAA] {
            if let Lookup::Found(_, rrset) = snap.lookup(&lname(&name), rtype) {
                assert_encoded_lens(&lname(&name), &rrset);
            }
        }
    }
}

/// Also the regression test for the quadratic build: record sets were de-duplicated with a
/// linear `contains`, so this build took about nine minutes (debug) instead of seconds.
#[test]
fn build_of_ten_thousand_identities_finishes() {
    let mut t = mk_statefulset("web", "nginx", 0);
    t.ordinals.replicas = 10_000;
    t.identities = (0..10_000)
        .map(|o| {
            let addr = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                (o >> 16) as u16,
                o as u16,
            ));
            ready("web", o, vec![addr])
        })
        .collect();
    let snap = snapshot(vec![t]);
    assert_eq!(found(&snap, SVC, RecordType::AAAA).answers.len(), 10_000);
    let srv = found(&snap, &format!("_web._tcp.{SVC}"), RecordType::SRV);
    assert_eq!(srv.answers.len(), 10_000);
    assert!(srvs(srv).iter().all(|s| s.1 == 1));
    assert_eq!(
        addresses(found(&snap, &host("web-9999"), RecordType::AAAA)),
        [ip("2001:db8::270f")].into()
    );
    assert_nxdomain(&snap, &host("web-10000"), RecordType::AAAA);
    assert_eq!(snap.stats.tables, 1);
    assert!(snap.all_names().len() > 20_000);
}

#[test]
fn regression_ns_dns_name_exists_without_advertised_addresses() {
    // The apex NS points at ns.dns.<zone>: that name must not be NXDOMAIN even when no
    // address is advertised for it.
    let mut c = cfg();
    c.ns_addresses.clear();
    let snap = build(&[], &namespaces(&["default"]), &c, 1, SERIAL);
    assert_nodata(&snap, "ns.dns.cluster.local.", RecordType::A);
    assert_nodata(&snap, "ns.dns.cluster.local.", RecordType::AAAA);
}

#[test]
fn regression_declared_identity_is_named_after_its_pod_not_a_foreign_hostname() {
    // An observed pod whose spec.hostname is not its own name is not published; its declared
    // name must still be <pod>.<svc>, never the foreign hostname.
    let mut t = not_ready(mk_statefulset("web", "nginx", 2), 1);
    identity_mut(&mut t, 1).hostname = "elsewhere".into();
    let snap = snapshot(vec![t]);
    assert_nodata(&snap, &host("web-1"), RecordType::A);
    assert_nxdomain(&snap, &host("elsewhere"), RecordType::A);
}

// ---------------------------------------------------------------------------------------------
// Incremental updates: the same snapshot as a build from scratch
// ---------------------------------------------------------------------------------------------

/// Every name of `snap` with every answer, as text, for comparing two snapshots whole.
fn answers_of(snap: &Snapshot) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for name in snap.all_names() {
        let mut lines = Vec::new();
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
            RecordType::PTR,
            RecordType::NS,
        ] {
            if let Lookup::Found(_, rrset) = snap.lookup(&name, rtype) {
                let mut answers: Vec<String> =
                    rrset.answers.iter().map(|r| r.to_string()).collect();
                let mut glue: Vec<String> =
                    rrset.additionals.iter().map(|r| r.to_string()).collect();
                // Record order within a set is not significant (and PTRs of a shared address
                // follow the order of the changes).
                answers.sort();
                glue.sort();
                lines.push(format!("{rtype}: {answers:?} glue {glue:?}"));
            }
        }
        out.insert(name.to_string(), lines);
    }
    out
}

#[test]
fn incremental_updates_give_the_snapshot_a_full_build_gives() {
    use super::Indexer;
    let ns = namespaces(&["default", "other"]);
    let mut web = dual_stack(mk_statefulset("web", "nginx", 4));
    web.ports.push(port(Some("metrics"), "TCP", 9090));
    let mut db = mk_statefulset("db", "nginx", 2);
    db.ports = vec![port(Some("web"), "TCP", 9080)];
    let mut cache = mk_statefulset("cache", "cache", 3);
    cache.namespace = "other".into();
    let mut tables = vec![web.clone(), db.clone(), cache.clone()];

    let mut indexer = Indexer::new(cfg());
    indexer.load(tables.clone(), ns.clone());
    let check = |indexer: &Indexer, tables: &[IdentityTable], step: &str| {
        let incremental = indexer.snapshot(2, SERIAL);
        let full = build(tables, &ns, &cfg(), 2, SERIAL);
        let (a, b) = (answers_of(&incremental), answers_of(&full));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{step}: names"
        );
        assert_eq!(a, b, "{step}: answers");
        assert_eq!(
            incremental.stats.names, full.stats.names,
            "{step}: name count"
        );
        assert_eq!(
            incremental.stats.records, full.stats.records,
            "{step}: record count"
        );
        assert_eq!(
            incremental.stats.identities_by_state, full.stats.identities_by_state,
            "{step}: states"
        );
    };
    check(&indexer, &tables, "load");

    // One pod goes unready, then comes back with a new address.
    let mut web2 = not_ready(web.clone(), 1);
    indexer.apply(vec![web2.clone()], vec![]);
    tables[0] = web2.clone();
    check(&indexer, &tables, "web-1 not ready");
    identity_mut(&mut web2, 1).state = IdentityState::Ready;
    identity_mut(&mut web2, 1).published = true;
    identity_mut(&mut web2, 1).addresses = vec![ip("192.0.2.99"), v6(1)];
    indexer.apply(vec![web2.clone()], vec![]);
    tables[0] = web2.clone();
    check(&indexer, &tables, "web-1 back with a new address");

    // db takes web-0's address (a shared PTR), then scales to 0.
    let mut db2 = db.clone();
    identity_mut(&mut db2, 0).addresses = vec![v4(0)];
    indexer.apply(vec![db2.clone()], vec![]);
    tables[1] = db2.clone();
    check(&indexer, &tables, "shared address");
    let mut db3 = mk_statefulset("db", "nginx", 0);
    db3.ports = db2.ports.clone();
    indexer.apply(vec![db3.clone()], vec![]);
    tables[1] = db3;
    check(&indexer, &tables, "db scaled to 0");

    // cache moves to another Service, then loses its Service, then goes away.
    let mut cache2 = cache.clone();
    cache2.service = "cache-v2".into();
    indexer.apply(vec![cache2.clone()], vec![]);
    tables[2] = cache2.clone();
    check(&indexer, &tables, "cache under another Service");
    let cache3 = with_condition(cache2, ConditionStatus::False);
    indexer.apply(vec![cache3.clone()], vec![]);
    tables[2] = cache3;
    check(&indexer, &tables, "cache's Service not headless");
    indexer.apply(vec![], vec![("other".into(), "cache".into())]);
    tables.remove(2);
    check(&indexer, &tables, "cache deleted");

    // A full load with one table changed rebuilds that Service only, and ends the same.
    let mut web3 = web2.clone();
    web3.identities.pop();
    web3.ordinals.replicas = 3;
    tables[0] = web3;
    indexer.load(tables.clone(), ns.clone());
    check(&indexer, &tables, "full load after scale-down");
}
