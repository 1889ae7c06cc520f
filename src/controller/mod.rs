//! Identity reconciliation: the StatefulSet rules of `identity.md` as one pure function.
//!
//! [`reconcile`] turns a StatefulSet, its governing Service, its pods and the nodes into an
//! [`IdentityTable`]. The embedded source and (later) the cluster controller both call it, so
//! the rules live in exactly one place.

pub mod cluster;
pub mod explain;
#[cfg(test)]
pub(crate) mod fixtures;
mod identity;
mod peerset;
mod reconcile;
pub mod run;

pub use identity::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};
pub use peerset::{PeerSet, PeerSetError, PeerSetSpec, PeerSetStatus};
pub use reconcile::{
    CLAIM_SEPARATOR, MAX_DECLARED, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL,
    SRV_PRIORITY_ANNOTATION, parent_and_ordinal, reconcile, srv_priority_annotation,
};
