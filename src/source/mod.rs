//! Record sources: where identity tables come from. Today the embedded default (Kubernetes
//! manifests on disk, hot-reloaded); the cluster's PeerSets later.

pub mod embedded;
pub mod leases;
pub mod manifests;
mod watch;

pub use watch::{ManifestSource, Publish};
