//! petdns: the DNS authority for Kubernetes StatefulSet identities.
//!
//! ```text
//!  manifests (YAML) ──notify──▶ source::manifests ──▶ source::embedded ──┐
//!                                (parse, validate)    (materialise pods,  │
//!                                                      leases)            ▼
//!                                             controller::reconcile(set, service, pods, nodes)
//!                                                          │ IdentityTable per StatefulSet
//!                                                          ▼
//!                                             index::build ──▶ Snapshot (immutable)
//!                                                          │ ArcSwap::store
//!                                                          ▼
//!  dig / resolvers ◀──UDP/TCP── dns::Authority (hickory RequestHandler): load, lookup, copy
//!
//!  admin: /healthz /readyz /metrics (axum, prometheus-client)
//! ```
//!
//! Answers are computed when data changes, never per query: the query path does one atomic
//! snapshot load and one hash lookup.

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
