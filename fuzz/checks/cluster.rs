//! The cluster the DNS targets (`query`, `fast`) answer for, and the `peerset` target's seed
//! tables: a small, realistic snapshot written out here so that a corpus file means the same
//! thing on every run. Declared at the crate root (`mod cluster`) by each fuzz target and by
//! `tests/fuzz_corpus.rs`; the checks use it as `crate::cluster`.

#![allow(dead_code, reason = "each target uses a part of it")]

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::rr::Name;
use petdns::identity::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};
use petdns::index::{self, IndexConfig, Snapshot};

/// The zone `cluster.local.`, TTL 5, negative TTL 7, one name server address.
pub fn config() -> IndexConfig {
    IndexConfig {
        zone: Name::from_ascii("cluster.local.").expect("static name"),
        ttl: 5,
        negative_ttl: 7,
        ns_addresses: vec!["192.0.2.53".parse().expect("static address")],
    }
}

fn resolved() -> Vec<Condition> {
    vec![Condition {
        type_: "ServiceResolved".into(),
        status: ConditionStatus::True,
        reason: "ServiceResolved".into(),
        message: String::new(),
    }]
}

fn port(name: Option<&str>, protocol: &str, port: u16) -> PortSpec {
    PortSpec {
        name: name.map(Into::into),
        protocol: protocol.into(),
        port,
    }
}

/// `replicas` identities of `set`; `state(ordinal)` gives each one's state and addresses.
#[allow(clippy::too_many_arguments)]
fn table(
    ns: &str,
    set: &str,
    service: &str,
    replicas: i32,
    ports: Vec<PortSpec>,
    srv_priority: SrvPriority,
    publish_not_ready: bool,
    claims: &[&str],
    state: impl Fn(i32) -> (IdentityState, Vec<IpAddr>),
) -> IdentityTable {
    IdentityTable {
        namespace: ns.into(),
        stateful_set: set.into(),
        service: service.into(),
        ordinals: Ordinals { start: 0, replicas },
        pod_management_policy: "OrderedReady".into(),
        publish_not_ready_addresses: publish_not_ready,
        srv_priority,
        ports,
        identities: (0..replicas)
            .map(|o| {
                let (state, addresses) = state(o);
                Identity {
                    ordinal: o,
                    pod: format!("{set}-{o}"),
                    hostname: format!("{set}-{o}"),
                    addresses,
                    state,
                    published: state == IdentityState::Ready || publish_not_ready,
                    node: None,
                    revision: Some(format!("{set}-6d8f5c")),
                    claims: claims.iter().map(|c| format!("{c}-{set}-{o}")).collect(),
                }
            })
            .collect(),
        conditions: resolved(),
    }
}

fn ip(text: String) -> IpAddr {
    text.parse().expect("a fixture address")
}

/// A small, realistic cluster: the documentation's `web`/`nginx` (dual-stack, one pod not
/// ready), a 24-pod database whose SRV answers outgrow 512 and 1232 bytes (glue dropped, then
/// TC), two sets sharing one Service, several ports (named, unnamed, UDP), ordinal SRV
/// priorities, `publishNotReadyAddresses`, and a set whose Service does not resolve.
pub fn tables() -> Vec<IdentityTable> {
    let mut unresolved = table(
        "staging",
        "orphan",
        "missing",
        2,
        vec![port(Some("http"), "TCP", 80)],
        SrvPriority::Uniform,
        false,
        &[],
        |o| {
            (
                IdentityState::Ready,
                vec![ip(format!("192.0.2.{}", 200 + o))],
            )
        },
    );
    unresolved.conditions[0].status = ConditionStatus::False;
    unresolved.conditions[0].reason = "ServiceNotFound".into();
    vec![
        table(
            "default",
            "web",
            "nginx",
            4,
            vec![port(Some("web"), "TCP", 80)],
            SrvPriority::Uniform,
            false,
            &["www"],
            |o| {
                let state = if o == 3 {
                    IdentityState::NotReady
                } else {
                    IdentityState::Ready
                };
                (
                    state,
                    vec![
                        ip(format!("192.0.2.{}", 10 + o)),
                        ip(format!("2001:db8::{}", 10 + o)),
                    ],
                )
            },
        ),
        table(
            "prod",
            "db",
            "db",
            24,
            vec![
                port(Some("pg"), "TCP", 5432),
                port(Some("metrics"), "TCP", 9187),
                port(None, "TCP", 8008),
            ],
            SrvPriority::Ordinal,
            false,
            &["data", "wal"],
            |o| {
                let state = match o {
                    20 => IdentityState::Pending,
                    21 => IdentityState::Terminating,
                    _ => IdentityState::Ready,
                };
                (
                    state,
                    vec![
                        ip(format!("198.51.100.{}", 10 + o)),
                        ip(format!("2001:db8:1::{:x}", 10 + o)),
                    ],
                )
            },
        ),
        table(
            "prod",
            "kafka",
            "brokers",
            3,
            vec![
                port(Some("kafka"), "TCP", 9092),
                port(Some("dns"), "UDP", 53),
            ],
            SrvPriority::Uniform,
            true,
            &[],
            |o| {
                let state = if o == 2 {
                    IdentityState::NotReady
                } else {
                    IdentityState::Ready
                };
                (state, vec![ip(format!("203.0.113.{}", 10 + o))])
            },
        ),
        table(
            "prod",
            "kafka-b",
            "brokers",
            2,
            vec![port(Some("kafka"), "TCP", 9092)],
            SrvPriority::Uniform,
            true,
            &[],
            |o| {
                (
                    IdentityState::Ready,
                    vec![ip(format!("203.0.113.{}", 20 + o))],
                )
            },
        ),
        unresolved,
    ]
}

/// The namespaces the snapshot knows (a name in one of them without records is NODATA or
/// NXDOMAIN, never outside the zone).
pub fn namespaces() -> BTreeSet<String> {
    ["default", "kube-system", "prod", "staging"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The loaded snapshot of [`tables`].
pub fn snapshot() -> Snapshot {
    index::build(&tables(), &namespaces(), &config(), 1, 42)
}
