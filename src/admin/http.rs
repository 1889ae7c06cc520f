//! The admin HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Readiness: true once every source finished its first load, false again when shutdown
/// starts, so load balancers stop sending queries before the listeners close.
#[derive(Default)]
pub struct Health {
    loaded: AtomicBool,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire)
    }
}

struct AdminState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    pub async fn bind(
        addr: SocketAddr,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_handler))
            .with_state(Arc::new(AdminState { health, metrics }));
        Ok(AdminServer { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    if s.health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_handler(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
