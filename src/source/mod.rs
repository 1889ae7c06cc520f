//! Record sources: where identity tables come from. The embedded default reads Kubernetes
//! manifests on disk (hot-reloaded); cluster mode watches PeerSets.

use std::collections::BTreeSet;

use crate::identity::IdentityTable;

pub mod embedded;
pub mod kube;
pub mod leases;
pub mod manifests;
mod slim;
mod watch;

pub use watch::{ManifestSource, set_after_load};

/// Where a source sends what it loaded.
pub trait Publish: Send {
    /// A load succeeded: these are now all the tables.
    fn loaded(&mut self, tables: Vec<IdentityTable>, namespaces: BTreeSet<String>);
    /// Some tables changed since the last publication (`upserts`), some went away (`removed`,
    /// by namespace and StatefulSet); the others are unchanged. Only after a first `loaded`.
    fn changed(&mut self, upserts: Vec<IdentityTable>, removed: Vec<(String, String)>);
    /// Input was rejected; the previous tables keep serving.
    fn rejected(&mut self);
    /// The lease file could not be written.
    fn lease_write_failed(&mut self, error: &leases::LeaseError);
}
