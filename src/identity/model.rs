//! The identity table: the shape of a `PeerSet` (spec and status) as `identity.md` defines it.
//! Field names follow that contract so the cluster controller can publish this type unchanged.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The declared ordinal range `[start, start + replicas)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Ordinals {
    pub start: i32,
    pub replicas: i32,
}

impl Ordinals {
    pub fn contains(&self, ordinal: i32) -> bool {
        ordinal >= self.start && (ordinal as i64) < self.start as i64 + self.replicas as i64
    }

    pub fn iter(&self) -> impl Iterator<Item = i32> {
        let end = self.start as i64 + self.replicas.max(0) as i64;
        (self.start as i64..end.min(i32::MAX as i64 + 1)).map(|o| o as i32)
    }
}

/// One Service port as SRV answers carry it: name and protocol from the Service, `port` the
/// target (container) port resolved against the pod template.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct PortSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: String,
    #[schemars(schema_with = "port_schema")]
    pub port: u16,
}

/// A port number as a Kubernetes schema spells it: the API server knows no `uint16` format and
/// warns about one on every CRD write.
fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535})
}

/// IP addresses as strings: Kubernetes knows `ipv4` and `ipv6` but no format for either (the
/// `ip` schemars writes draws a warning); petdns parses them when it reads the object.
fn addresses_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "string", "maxLength": 45}})
}

/// How SRV priorities are assigned to a set's targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SrvPriority {
    /// Priority 0 for every target, as CoreDNS answers.
    #[default]
    Uniform,
    /// Priority = ordinal - start, so RFC 2782 clients try the lowest ordinal first.
    Ordinal,
}

/// The state of one identity, derived in the order of `identity.md`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum IdentityState {
    Missing,
    Pending,
    NodeLost,
    Terminating,
    NotReady,
    Ready,
    Condemned,
}

impl IdentityState {
    pub const ALL: [IdentityState; 7] = [
        IdentityState::Missing,
        IdentityState::Pending,
        IdentityState::NodeLost,
        IdentityState::Terminating,
        IdentityState::NotReady,
        IdentityState::Ready,
        IdentityState::Condemned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Missing => "Missing",
            IdentityState::Pending => "Pending",
            IdentityState::NodeLost => "NodeLost",
            IdentityState::Terminating => "Terminating",
            IdentityState::NotReady => "NotReady",
            IdentityState::Ready => "Ready",
            IdentityState::Condemned => "Condemned",
        }
    }
}

impl fmt::Display for IdentityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ordinal of a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub ordinal: i32,
    pub pod: String,
    pub hostname: String,
    #[serde(default)]
    #[schemars(schema_with = "addresses_schema")]
    pub addresses: Vec<IpAddr>,
    pub state: IdentityState,
    pub published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default)]
    pub claims: Vec<String>,
}

impl Identity {
    /// A declared ordinal of set `set` with no pod.
    pub fn missing(set: &str, ordinal: i32) -> Identity {
        let pod = format!("{set}-{ordinal}");
        Identity {
            ordinal,
            hostname: pod.clone(),
            pod,
            addresses: Vec::new(),
            state: IdentityState::Missing,
            published: false,
            node: None,
            revision: None,
            claims: Vec::new(),
        }
    }

    /// The addresses DNS answers for this identity: all of them when published, none otherwise.
    pub fn published_addresses(&self) -> &[IpAddr] {
        if self.published { &self.addresses } else { &[] }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
}

/// A condition with a reason a person can act on (`ServiceNotFound`, `ServiceNotHeadless`,
/// `SelectorMismatch`, `SubdomainMismatch`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// The identities of one StatefulSet and everything DNS needs to answer for them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityTable {
    pub namespace: String,
    pub stateful_set: String,
    /// The governing Service (`spec.serviceName`); empty when the set names none.
    pub service: String,
    pub ordinals: Ordinals,
    pub pod_management_policy: String,
    pub publish_not_ready_addresses: bool,
    #[serde(default)]
    pub srv_priority: SrvPriority,
    pub ports: Vec<PortSpec>,
    /// Declared identities in ordinal order, then condemned ones.
    pub identities: Vec<Identity>,
    pub conditions: Vec<Condition>,
}

impl IdentityTable {
    /// True when the governing Service exists, is headless and selects the set's pods: only
    /// then does the table contribute records.
    pub fn service_resolved(&self) -> bool {
        self.conditions
            .iter()
            .find(|c| c.type_ == "ServiceResolved")
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    pub fn declared(&self) -> usize {
        self.ordinals.replicas.max(0) as usize
    }

    pub fn published(&self) -> usize {
        self.identities.iter().filter(|i| i.published).count()
    }

    /// Conditions that are not satisfied, for logs and `petdns check`.
    pub fn problems(&self) -> impl Iterator<Item = &Condition> {
        self.conditions
            .iter()
            .filter(|c| c.status == ConditionStatus::False)
    }
}
