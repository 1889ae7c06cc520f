//! petdns: the DNS authority for Kubernetes StatefulSet identities.
//!
//! ```text
//!  embedded: manifests ──notify──▶ source::manifests ──▶ source::embedded ──▶ identity::reconcile ─┐
//!            (YAML)                (parse, validate)    (materialise, leases)                       │
//!  cluster:  API server ──watch──▶ controller ──▶ identity::reconcile ──▶ PeerSet (API server)     │
//!            API server ──watch PeerSets──▶ source::kube ────────────────────────────────────────────┤
//!                                                                    IdentityTable per StatefulSet ▼
//!                                             index::Indexer: compact data per set; only the
//!                                                          │  changed Services rebuilt
//!                                                          ▼
//!                                             Snapshot (immutable) ── ArcSwap::store
//!                                                          ▼
//!  dig / resolvers ◀──UDP/TCP── dns::fast (plain questions): load, resolve, write in place
//!                               dns::Authority (hickory RequestHandler): everything else
//!
//!  admin: /healthz /readyz /metrics (axum, prometheus-client)
//!  commands: one file per verb (serve, controller, check, explain, crd, completions/man)
//! ```
//!
//! Layers, lowest first (each uses only those below it; `tests/layout.rs` checks):
//! `identity`, `cidr`, `k8s` · `index` · `admin` · `source`, `dns`, `controller` · `cli` ·
//! `config`, `telemetry` · `commands`. Read in the order of the diagram, the folders are the
//! order data flows: `source`, `identity`, `index`, `dns`; then `admin`, and for cluster mode
//! `k8s` and `controller`; `commands` wires them.
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
pub mod cidr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod controller;
pub mod dns;
pub mod identity;
pub mod index;
pub mod k8s;
pub mod source;
pub mod telemetry;
