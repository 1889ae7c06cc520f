//! `petdns serve`: the DNS authority, its record source and its admin endpoints.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::AppError;
use super::parts::{Part, run_parts};
use crate::admin::{AdminServer, Health, Metrics, SourceMetrics};
use crate::config::{ConfigError, ServeConfig, SourceConfig};
use crate::dns::{Authority, DnsServer, ListenerConfig, Rrl};
use crate::identity::IdentityTable;
use crate::index::{self, IndexConfig, Indexer, Snapshot};
use crate::k8s::kube_client;
use crate::source::kube::PeerSetSource;
use crate::source::leases::{LeaseError, LeaseStore};
use crate::source::manifests;
use crate::source::{ManifestSource, Publish};

/// Builds snapshots from loaded tables and publishes them to the DNS handler.
struct SnapshotPublisher {
    snapshot: Arc<ArcSwap<Snapshot>>,
    index: Indexer,
    generation: u64,
    serial: u32,
    metrics: Arc<SourceMetrics>,
    health: Arc<Health>,
}

impl Publish for SnapshotPublisher {
    fn loaded(&mut self, tables: Vec<IdentityTable>, namespaces: BTreeSet<String>) {
        self.index.load(tables, namespaces);
        self.publish();
    }

    fn changed(&mut self, upserts: Vec<IdentityTable>, removed: Vec<(String, String)>) {
        self.index.apply(upserts, removed);
        self.publish();
    }

    fn rejected(&mut self) {
        self.metrics.reload_errors.inc();
    }

    fn lease_write_failed(&mut self, _error: &LeaseError) {
        self.metrics.lease_write_errors.inc();
    }
}

impl SnapshotPublisher {
    /// Publishes a snapshot of the indexer's current state.
    fn publish(&mut self) {
        self.generation += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.serial = (now as u32).max(self.serial.wrapping_add(1));
        let snap = self.index.snapshot(self.generation, self.serial);
        self.metrics.snapshot(self.generation, &snap.stats);
        info!(
            generation = self.generation,
            serial = self.serial,
            names = snap.stats.names,
            records = snap.stats.records,
            "snapshot published"
        );
        self.snapshot.store(Arc::new(snap));
        self.metrics.reloads.inc();
        self.metrics.last_reload_seconds.set(now as f64);
        self.health.set_loaded();
    }
}

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let index_cfg = IndexConfig {
        zone: cfg.zone.clone(),
        ttl: cfg.ttl,
        negative_ttl: cfg.negative_ttl,
        ns_addresses: cfg.advertise.clone(),
    };
    if cfg.advertise.is_empty() {
        warn!(
            "no --advertise address: ns.dns.{} has no A/AAAA record",
            cfg.zone
        );
    }
    let snapshot = Arc::new(ArcSwap::from_pointee(index::placeholder(&index_cfg)));
    let publisher = SnapshotPublisher {
        snapshot: snapshot.clone(),
        index: Indexer::new(index_cfg),
        generation: 0,
        serial: 0,
        metrics: metrics.source.clone(),
        health: health.clone(),
    };
    let source_token = CancellationToken::new();
    // Check the source before binding anything: a wrong flag fails at once.
    let source: futures::future::BoxFuture<'static, anyhow::Result<()>> = match &cfg.source {
        SourceConfig::Manifests { paths, state_dir } => {
            manifests::manifest_files(paths).map_err(|errors| {
                AppError::Config(ConfigError::Manifests(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                ))
            })?;
            let leases = LeaseStore::open(state_dir, cfg.pod_cidr).context("--state-dir")?;
            Box::pin(
                ManifestSource::new(paths.clone(), leases, cfg.srv_priority, publisher)
                    .run(source_token.clone()),
            )
        }
        SourceConfig::Kube {
            kubeconfig,
            namespaces,
        } => {
            let client = kube_client(kubeconfig.as_deref()).await?;
            let source =
                PeerSetSource::new(client, namespaces.clone(), publisher, metrics.kube.clone());
            Box::pin(source.run(source_token.clone()))
        }
    };

    let mut authority = Authority::new(snapshot, metrics.dns.clone(), cfg.max_udp_payload)
        .log_queries(cfg.log_queries);
    if let Some(forwarder) = forwarder(&cfg)? {
        info!(upstreams = ?forwarder.upstreams(), "forwarding names petdns does not own");
        authority = authority.with_forwarder(Arc::new(forwarder));
    }
    let listener = ListenerConfig {
        addr: cfg.listen,
        tcp_idle_timeout: cfg.tcp_idle_timeout,
        udp_sockets: cfg.udp_sockets,
        answer_cache_bytes: cfg.answer_cache_bytes,
        tcp_max_connections: cfg.tcp_max_connections,
        rrl: cfg.rrl.map(|rrl| {
            info!(
                responses_per_second = rrl.responses_per_second,
                slip = rrl.slip,
                ipv4_prefix = rrl.ipv4_prefix,
                ipv6_prefix = rrl.ipv6_prefix,
                "response rate limiting on for UDP"
            );
            Arc::new(Rrl::new(rrl, metrics.dns.clone()))
        }),
    };
    let dns = DnsServer::bind(authority, &listener)
        .await
        .with_context(|| format!("cannot listen for DNS on {}", cfg.listen))?;
    let admin = AdminServer::bind(cfg.admin, health.clone(), metrics.clone())
        .await
        .with_context(|| format!("cannot listen for admin HTTP on {}", cfg.admin))?;
    info!(dns = %dns.local_addr(), admin = %admin.local_addr()?, zone = %cfg.zone, "listening");

    let dns_token = CancellationToken::new();
    let parts = vec![
        Part::spawn(
            "DNS listeners",
            dns_token.clone(),
            dns.run(dns_token).instrument(info_span!("dns")),
        ),
        Part::spawn(
            "record source",
            source_token,
            source.instrument(info_span!("source")),
        ),
    ];
    run_parts(health, parts, admin).await
}

/// The forwarder `--forward` asks for, if any.
fn forwarder(cfg: &ServeConfig) -> anyhow::Result<Option<crate::dns::Forwarder>> {
    use crate::cli::ForwardTarget;
    if cfg.forward.is_empty() {
        return Ok(None);
    }
    let forwarder = if cfg.forward.contains(&ForwardTarget::Auto) {
        crate::dns::Forwarder::from_system(cfg.listen)
    } else {
        let addrs: Vec<std::net::SocketAddr> = cfg
            .forward
            .iter()
            .filter_map(|t| match t {
                ForwardTarget::Addr(a) => Some(*a),
                ForwardTarget::Auto => None,
            })
            .collect();
        crate::dns::Forwarder::new(&addrs)
    };
    Ok(Some(forwarder.context("--forward")?))
}
