//! Health, readiness and metrics over HTTP (`/healthz`, `/readyz`, `/metrics`).

mod http;
mod metrics;

pub use http::{AdminServer, Health};
pub use metrics::{DnsMetrics, KubeMetrics, Metrics, SourceMetrics, rcode_label};
