//! The companion controller process (`petdns controller`): watches StatefulSets, their
//! Services, their pods and the Nodes, runs [`crate::identity::reconcile`] on each set and
//! publishes the result as PeerSets. Only this command uses it.

mod cache;
pub mod cluster;
pub mod run;
