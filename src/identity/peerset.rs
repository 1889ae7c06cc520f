//! The `PeerSet` custom resource (`petdns.io/v1alpha1`): one per StatefulSet, written by the
//! controller and read by the DNS servers. Its spec and status are the [`IdentityTable`].

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{Condition, Identity, IdentityTable, Ordinals, PortSpec, SrvPriority};

/// What the StatefulSet and its governing Service declare.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "petdns.io",
    version = "v1alpha1",
    kind = "PeerSet",
    plural = "peersets",
    shortname = "pset",
    namespaced,
    status = "PeerSetStatus",
    printcolumn = r#"{"name":"SERVICE","type":"string","jsonPath":".spec.service"}"#,
    printcolumn = r#"{"name":"READY","type":"string","description":"published/declared identities","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PeerSetSpec {
    pub stateful_set: String,
    pub service: String,
    pub ordinals: Ordinals,
    pub pod_management_policy: String,
    pub publish_not_ready_addresses: bool,
    #[serde(default)]
    pub srv_priority: SrvPriority,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

/// What the pods are doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `published/declared`, for `kubectl get peersets`.
    #[serde(default)]
    pub ready: String,
    #[serde(default)]
    pub identities: Vec<Identity>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Why a PeerSet cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerSetError {
    #[error("PeerSet has no name or namespace")]
    NoName,
    #[error("PeerSet {0} has no status yet")]
    NoStatus(String),
    #[error("PeerSet {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl PeerSet {
    /// The PeerSet for a table; `observed_generation` is the StatefulSet's generation.
    pub fn from_table(
        table: &IdentityTable,
        observed_generation: Option<i64>,
    ) -> (PeerSetSpec, PeerSetStatus) {
        let spec = PeerSetSpec {
            stateful_set: table.stateful_set.clone(),
            service: table.service.clone(),
            ordinals: table.ordinals,
            pod_management_policy: table.pod_management_policy.clone(),
            publish_not_ready_addresses: table.publish_not_ready_addresses,
            srv_priority: table.srv_priority,
            ports: table.ports.clone(),
        };
        let status = PeerSetStatus {
            observed_generation,
            ready: format!("{}/{}", table.published(), table.declared()),
            identities: table.identities.clone(),
            conditions: table.conditions.clone(),
        };
        (spec, status)
    }

    /// The table a DNS server serves from this PeerSet, after checking that it makes sense:
    /// a PeerSet with garbage in it is rejected, never half-served.
    pub fn to_table(&self) -> Result<IdentityTable, PeerSetError> {
        let (Some(name), Some(namespace)) =
            (self.metadata.name.clone(), self.metadata.namespace.clone())
        else {
            return Err(PeerSetError::NoName);
        };
        let status = self
            .status
            .clone()
            .ok_or_else(|| PeerSetError::NoStatus(name.clone()))?;
        let invalid = |reason: String| PeerSetError::Invalid {
            name: name.clone(),
            reason,
        };
        let spec = &self.spec;
        if spec.ordinals.replicas < 0 || spec.ordinals.start < 0 {
            return Err(invalid(format!("negative ordinals {:?}", spec.ordinals)));
        }
        for identity in &status.identities {
            let expected = format!("{}-{}", spec.stateful_set, identity.ordinal);
            if identity.pod != expected {
                return Err(invalid(format!(
                    "identity {} is not named {expected}",
                    identity.pod
                )));
            }
            if identity.published && identity.addresses.is_empty() {
                return Err(invalid(format!(
                    "identity {} is published without an address",
                    identity.pod
                )));
            }
        }
        for p in &spec.ports {
            if p.port == 0 {
                return Err(invalid("a port is 0".into()));
            }
        }
        Ok(IdentityTable {
            namespace,
            stateful_set: spec.stateful_set.clone(),
            service: spec.service.clone(),
            ordinals: spec.ordinals,
            pod_management_policy: spec.pod_management_policy.clone(),
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
            srv_priority: spec.srv_priority,
            ports: spec.ports.clone(),
            identities: status.identities,
            conditions: status.conditions,
        })
    }
}
