//! The synthetic cluster both benchmarks index: `sets` StatefulSets of `pods` Ready
//! identities, 10 sets per namespace, as `bench/gen_zone.py` lays out the benchmark's cluster.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use petdns::identity::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};

/// What each identity carries besides its IPv4 address.
#[derive(Clone, Copy)]
pub struct Shape {
    /// An IPv6 address too.
    pub v6: bool,
    /// A node, a revision and a claim, as the StatefulSet controller's pods have.
    pub full: bool,
}

pub fn tables(sets: usize, pods: i32, shape: Shape) -> Vec<IdentityTable> {
    (0..sets)
        .map(|s| {
            let set = format!("svc-{}", s % 10);
            IdentityTable {
                namespace: format!("ns-{}", s / 10),
                stateful_set: set.clone(),
                service: set.clone(),
                ordinals: Ordinals {
                    start: 0,
                    replicas: pods,
                },
                pod_management_policy: "OrderedReady".into(),
                publish_not_ready_addresses: false,
                srv_priority: SrvPriority::Uniform,
                ports: vec![PortSpec {
                    name: Some("http".into()),
                    protocol: "TCP".into(),
                    port: 80,
                }],
                identities: (0..pods)
                    .map(|o| {
                        let i = s as u32 * pods as u32 + o as u32;
                        let mut addresses = vec![IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i))];
                        if shape.v6 {
                            addresses.push(IpAddr::V6(Ipv6Addr::from(
                                0xfd00_0010_0244_0000_0000_0000_0000_0000u128 + u128::from(i),
                            )));
                        }
                        Identity {
                            ordinal: o,
                            pod: format!("{set}-{o}"),
                            hostname: format!("{set}-{o}"),
                            addresses,
                            state: IdentityState::Ready,
                            published: true,
                            node: shape.full.then(|| format!("node-{}", i % 100)),
                            revision: shape.full.then(|| format!("{set}-5d8f7c9b6d")),
                            claims: if shape.full {
                                vec![format!("data-{set}-{o}")]
                            } else {
                                vec![]
                            },
                        }
                    })
                    .collect(),
                conditions: vec![Condition {
                    type_: "ServiceResolved".into(),
                    status: ConditionStatus::True,
                    reason: "ServiceResolved".into(),
                    message: String::new(),
                }],
            }
        })
        .collect()
}
