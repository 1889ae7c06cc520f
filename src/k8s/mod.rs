//! What both cluster-mode programs (`petdns controller`, `petdns serve --kube`) share: a client
//! from a kubeconfig, and watches with backoff and relist.

mod client;
mod watch;

pub use client::kube_client;
pub use watch::{WatchBackoff, with_backoff};
