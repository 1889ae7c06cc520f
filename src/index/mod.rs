//! Record index: identity tables in, an immutable [`Snapshot`] of prepared answers out.
//!
//! Everything a query needs is computed here when data changes: the record sets per name and
//! type, their glue, their encoded sizes (for whole-RRset truncation) and the set of existing
//! names (so NXDOMAIN versus NODATA is one hash lookup). The query path only reads.

mod build;
pub mod service;
pub mod sink;
mod snapshot;
pub mod wire;

pub use build::{IndexConfig, Indexer, SCHEMA_VERSION, build, placeholder};
pub use snapshot::{
    CLUSTER, CoreName, FastName, FastZone, IN_ADDR, IP6, Lookup, NameEntry, Node, Ptrs, RrSet,
    Snapshot, SnapshotStats, Zone,
};

#[cfg(test)]
mod tests;
