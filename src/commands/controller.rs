//! `petdns controller`: the companion controller with its admin endpoints.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use super::parts::{Part, run_parts};
use crate::admin::{AdminServer, Health, Metrics};
use crate::config::ControllerConfig;
use crate::k8s::kube_client;

/// `petdns controller`: the companion controller with its admin endpoints.
pub async fn controller(cfg: ControllerConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let client = kube_client(cfg.kubeconfig.as_deref()).await?;
    let admin = AdminServer::bind(cfg.admin, health.clone(), metrics.clone())
        .await
        .with_context(|| format!("cannot listen for admin HTTP on {}", cfg.admin))?;
    info!(admin = %admin.local_addr()?, identity = %cfg.run.identity, "controller starting");
    let token = CancellationToken::new();
    let run = crate::controller::run::run(
        client,
        cfg.run,
        health.clone(),
        metrics.kube.clone(),
        token.clone(),
    );
    let parts = vec![Part::spawn(
        "controller",
        token,
        run.instrument(info_span!("controller")),
    )];
    run_parts(health, parts, admin).await
}
