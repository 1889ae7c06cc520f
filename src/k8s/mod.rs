//! What both cluster-mode programs (`petdns controller`, `petdns serve --kube`) share: a client
//! from a kubeconfig, and watches with backoff and relist.

mod client;
mod health;
mod watch;

pub use client::kube_client;
pub use health::WatchHealth;
pub use watch::{WatchBackoff, with_backoff};
