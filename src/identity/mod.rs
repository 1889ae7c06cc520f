//! The identity model and the StatefulSet rules: pure, no I/O, no Kubernetes client.
//!
//! [`reconcile`] turns a StatefulSet, its governing Service, its pods and the nodes into an
//! [`IdentityTable`]. The embedded source and the cluster controller both call it, so the
//! rules live in exactly one place. [`PeerSet`] is the wire form of a table (the CRD both
//! cluster-mode programs speak), and [`explain`] gives the reasons behind an answer.
//! Everything may import this module; it imports nothing of ours.

pub mod explain;
#[cfg(test)]
pub(crate) mod fixtures;
mod model;
mod peerset;
mod reconcile;

pub use model::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};
pub use peerset::{
    DEFAULT_SLICE_SIZE, MAX_SLICE_SIZE, PEER_SET_LABEL, PeerObjects, PeerSet, PeerSetError,
    PeerSetSpec, PeerSetStatus, PeerSlice, PeerSliceSpec, block_of, check_block, parse_slice_name,
    slice_name,
};
pub use reconcile::{
    CLAIM_SEPARATOR, MAX_DECLARED, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL,
    SRV_PRIORITY_ANNOTATION, node_lost, parent_and_ordinal, reconcile, srv_priority_annotation,
};
