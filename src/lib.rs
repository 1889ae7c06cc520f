//! petdns: the DNS authority for Kubernetes StatefulSet identities.
//!
//! ```text
//!  manifests (YAML) ──notify──▶ source::manifests ──▶ source::embedded ──┐
//!                                (parse, validate)    (materialise pods,  │
//!                                                      leases)            ▼
//!                                             controller::reconcile(set, service, pods, nodes)
//!                                                          │ IdentityTable per StatefulSet
//!                                                          ▼
//!                                             index::Indexer: compact data per set; only
//!                                                          │  the changed Services rebuilt
//!                                                          ▼
//!                                             Snapshot (immutable)
//!                                                          │ ArcSwap::store
//!                                                          ▼
//!  dig / resolvers ◀──UDP/TCP── dns::fast (plain questions): load, resolve, write in place
//!                               dns::Authority (hickory RequestHandler): everything else
//!
//!  admin: /healthz /readyz /metrics (axum, prometheus-client)
//! ```
//!
//! Compact data is computed when data changes: each StatefulSet's identities (ordinals,
//! states, addresses, ports) and each governing Service's, plus the records and encoded
//! responses of the few fixed names (zone apexes, `ns.dns`, namespaces). The records of a pod,
//! Service or reverse name are computed per query from that data: one atomic snapshot load,
//! the name parsed and found with a map lookup (and a binary search for a pod), the answer
//! written in place without allocating on the fast path. So the snapshot holds no record per
//! name, and one pod's change rebuilds only its Service.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod controller;
pub mod dns;
pub mod index;
pub mod source;
pub mod telemetry;
