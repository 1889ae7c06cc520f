//! Record index: identity tables in, an immutable [`Snapshot`] of compact data out.
//!
//! Computed here when data changes: each StatefulSet's [`service::SetData`] (identities,
//! states, addresses, ports; names derived, not stored), each governing Service's
//! [`service::ServiceData`], the reverse maps, and the records, encoded sizes and pre-encoded
//! responses of the fixed names (zone apexes, `ns.dns`, `dns-version`, `svc`, `pod`,
//! namespaces). Computed per query: the records of every other name, found by
//! [`Snapshot::resolve`] (the name parsed, then map lookups: NXDOMAIN versus NODATA needs no
//! list of names) and written by `ServiceData::answer` into a [`service::Sink`]: wire format in
//! place on the fast path ([`sink::WireSink`]), hickory records on the reference path
//! ([`sink::RecordSink`], through [`Snapshot::lookup`]). The query path only reads.
//!
//! The [`Indexer`] keeps the per-set data between changes, rebuilds only the Services whose
//! sets changed, and shares everything else with the previous snapshot (persistent maps).

mod build;
mod chunks;
pub mod service;
pub mod sink;
mod snapshot;
pub mod wire;

pub use build::{IndexConfig, Indexer, SCHEMA_VERSION, build, placeholder};
pub use snapshot::{
    CLUSTER, CoreName, FastName, FastZone, IN_ADDR, IP6, Lookup, NameEntry, Node, RrSet, Snapshot,
    SnapshotStats, Zone,
};

#[cfg(test)]
mod tests;
