//! What `serve` and `controller` share: their long-running parts run side by side until a
//! signal or a part failing, then stop in a fixed order (readiness off, each part in the order
//! given, the admin server last). A second signal aborts.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::AppError;
use crate::admin::{AdminServer, Health};

/// One long-running part of the process and the token that stops it.
pub struct Part {
    name: &'static str,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Part {
    /// Spawns `fut`, which stops when `token` is cancelled.
    pub fn spawn<F>(name: &'static str, token: CancellationToken, fut: F) -> Part
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Part {
            name,
            token,
            task: tokio::spawn(fut),
        }
    }
}

/// Runs the parts and the admin server until a signal or a part failing, then shuts down in
/// order: readiness off, each part in the order given, admin last. A second signal aborts.
pub async fn run_parts(
    health: Arc<Health>,
    mut parts: Vec<Part>,
    admin: AdminServer,
) -> anyhow::Result<()> {
    let admin_token = CancellationToken::new();
    let mut admin_task = tokio::spawn(
        admin
            .run(admin_token.clone())
            .instrument(info_span!("admin")),
    );
    let first_done = futures::future::select_all(
        parts
            .iter_mut()
            .map(|p| Box::pin(async { (p.name, (&mut p.task).await) })),
    );
    let mut failure: Option<anyhow::Error> = None;
    let mut finished: Option<&'static str> = None;
    tokio::select! {
        signal = shutdown_signal() => info!(%signal, "shutting down"),
        ((name, r), _, _) = first_done => {
            finished = Some(name);
            failure = Some(joined(r, name).err().unwrap_or_else(|| anyhow::anyhow!("{name} stopped")));
        }
        r = &mut admin_task => {
            failure = Some(joined(r.map(|r| r.map_err(anyhow::Error::from)), "admin server").err().unwrap_or_else(|| anyhow::anyhow!("admin server stopped")));
        }
    }
    if let Some(e) = &failure {
        error!(error = %format!("{e:#}"), "a part failed; shutting down");
    }
    let orderly = async {
        health.set_shutting_down();
        for part in parts {
            part.token.cancel();
            if Some(part.name) != finished {
                let _ = joined(part.task.await, part.name);
            }
        }
        admin_token.cancel();
        if !admin_task.is_finished() {
            let _ = admin_task.await;
        }
    };
    tokio::select! {
        () = orderly => {}
        signal = shutdown_signal() => {
            warn!(%signal, "second signal: aborting");
            return Err(AppError::Aborted.into());
        }
    }
    info!("shutdown complete");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>, what: &str) -> anyhow::Result<()> {
    match r {
        Ok(inner) => inner.with_context(|| what.to_string()),
        Err(e) => Err(anyhow::anyhow!("{what} task failed: {e}")),
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}
