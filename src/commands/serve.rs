//! Wiring: builds the parts from a validated configuration, runs them, shuts them down in
//! order (readiness off, DNS listeners, sources, admin last). A second signal aborts.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arc_swap::ArcSwap;
use hickory_proto::rr::RecordType;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::admin::{AdminServer, Health, Metrics, SourceMetrics};
use crate::cli::{Cli, Command};
use crate::config::{CheckConfig, ConfigError, ControllerConfig, ServeConfig, SourceConfig};
use crate::controller::IdentityTable;
use crate::dns::{Authority, DnsServer, ListenerConfig, Rrl};
use crate::index::{self, IndexConfig, Indexer, Snapshot};
use crate::source::kube::PeerSetSource;
use crate::source::leases::{LeaseError, LeaseStore};
use crate::source::manifests;
use crate::source::{ManifestSource, Publish, embedded};

/// Process exit codes.
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_ABORTED: u8 = 130;

/// Errors that map to a particular exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("aborted by a second signal during shutdown")]
    Aborted,
}

/// The exit code for an error returned by [`run`].
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<AppError>() {
        Some(AppError::Config(_)) => EXIT_INVALID,
        Some(AppError::Aborted) => EXIT_ABORTED,
        None => 1,
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::from_args(&args).map_err(AppError::from)?;
            serve(cfg).await.map(|()| 0)
        }
        Command::Check(args) => {
            let cfg = CheckConfig::from_args(&args).map_err(AppError::from)?;
            Ok(check(&cfg, &mut std::io::stdout().lock()))
        }
        Command::Explain(args) => explain(&args).await,
        Command::Controller(args) => {
            let cfg = ControllerConfig::from_args(&args).map_err(AppError::from)?;
            controller(cfg).await.map(|()| 0)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "petdns", &mut script);
            write_stdout(&script)?;
            Ok(0)
        }
        Command::Man { command } => {
            use clap::CommandFactory;
            let root = Cli::command();
            let cmd = match command {
                None => root,
                Some(name) => match root.find_subcommand(&name) {
                    Some(sub) => sub.clone().name(format!("petdns-{name}")),
                    None => {
                        eprintln!("petdns: no command {name:?}");
                        return Ok(EXIT_INVALID);
                    }
                },
            };
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            write_stdout(&page)?;
            Ok(0)
        }
        Command::Crd => {
            print!("{}", crd_yaml()?);
            Ok(0)
        }
    }
}

/// Writes to stdout; a closed pipe (`petdns man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The PeerSet CRD as YAML (`petdns crd`; `deploy/crd.yaml` is this output).
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt;
    let crd = crate::controller::PeerSet::crd();
    Ok(serde_saphyr::to_string(&crd)?)
}

/// A Kubernetes client from `--kubeconfig`, or in-cluster config, `KUBECONFIG`, `~/.kube/config`.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no kubeconfig found")?,
    };
    // No retries inside the client. kube's default retries 429, 503 and 504 up to 15 times,
    // from 5 ms doubling (3 to 8 minutes in all), before the caller sees an error: during an
    // outage that answers 503 the watches would sit in those retries, looking healthy, and
    // catch up minutes late. Every caller retries on its own, sooner: the watches with
    // `WatchBackoff` (at most 1 s), the controller's PeerSet writes every second, the leader
    // lease on its renewal loop; `petdns explain` reports the error.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

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

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
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

/// `petdns controller`: the companion controller with its admin endpoints.
async fn controller(cfg: ControllerConfig) -> anyhow::Result<()> {
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

/// One long-running part of the process and the token that stops it.
struct Part {
    name: &'static str,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Part {
    /// Spawns `fut`, which stops when `token` is cancelled.
    fn spawn<F>(name: &'static str, token: CancellationToken, fut: F) -> Part
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
async fn run_parts(
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

/// `petdns check`: prints the identity table and returns the exit code.
pub fn check(cfg: &CheckConfig, out: &mut dyn Write) -> u8 {
    let objects = match manifests::load(&cfg.manifests) {
        Ok(o) => o,
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(out, "error: {e}");
            }
            let _ = writeln!(out, "{} error(s); nothing loaded", errors.len());
            return EXIT_INVALID;
        }
    };
    let mut leases = match &cfg.state_dir {
        Some(dir) => LeaseStore::open_read_only(dir, cfg.pod_cidr),
        None => LeaseStore::in_memory(cfg.pod_cidr),
    };
    let tables = match embedded::tables(&objects, &mut leases, cfg.srv_priority) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_INVALID;
        }
    };
    let _ = write_table(&tables, out);
    0
}

fn write_table(tables: &[IdentityTable], out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "NAMESPACE",
        "SET",
        "ORDINAL",
        "POD",
        "STATE",
        "ADDRESSES",
        "PUBLISHED",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for t in tables {
        for i in &t.identities {
            let addrs = if i.addresses.is_empty() {
                "-".to_string()
            } else {
                i.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            rows.push([
                t.namespace.clone(),
                t.stateful_set.clone(),
                i.ordinal.to_string(),
                i.pod.clone(),
                i.state.to_string(),
                addrs,
                if i.published { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line(&r.iter().map(String::as_str).collect::<Vec<_>>())
        )?;
    }
    for t in tables {
        for c in t.problems() {
            writeln!(
                out,
                "warning: {}/{}: {}: {}",
                t.namespace, t.stateful_set, c.reason, c.message
            )?;
        }
    }
    Ok(())
}

/// `petdns explain`: the answers of a name and the reasons behind them.
async fn explain(args: &crate::cli::ExplainArgs) -> anyhow::Result<u8> {
    use crate::controller::explain;
    let zone = crate::config::parse_zone(&args.zone).map_err(AppError::from)?;
    let zone_text = zone.to_string();
    let target = match explain::parse_target(&args.name, &zone_text) {
        Ok(t) => t,
        Err(e) => {
            println!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let (tables, namespaces) = if args.source.kube {
        let client = kube_client(args.source.kubeconfig.as_deref()).await?;
        let api: kube::Api<crate::controller::PeerSet> = kube::Api::all(client);
        let list = api
            .list(&Default::default())
            .await
            .context("listing PeerSets")?;
        let mut tables = Vec::new();
        for ps in &list.items {
            match ps.to_table() {
                Ok(t) => tables.push(t),
                Err(e) => println!("warning: {e}"),
            }
        }
        let mut namespaces: BTreeSet<String> = manifests::BUILTIN_NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        namespaces.extend(tables.iter().map(|t| t.namespace.clone()));
        (tables, namespaces)
    } else {
        let objects = match manifests::load(&args.source.manifests) {
            Ok(o) => o,
            Err(errors) => {
                for e in &errors {
                    println!("error: {e}");
                }
                return Ok(EXIT_INVALID);
            }
        };
        let state_dir = args
            .leases
            .state_dir
            .clone()
            .or_else(crate::config::default_state_dir);
        let mut leases = match &state_dir {
            Some(dir) => LeaseStore::open_read_only(dir, args.leases.pod_cidr),
            None => LeaseStore::in_memory(args.leases.pod_cidr),
        };
        let tables = embedded::tables(
            &objects,
            &mut leases,
            crate::controller::SrvPriority::Uniform,
        )?;
        (tables, objects.all_namespaces())
    };
    let index_cfg = IndexConfig {
        zone: zone.clone(),
        ttl: 5,
        negative_ttl: 5,
        ns_addresses: Vec::new(),
    };
    let snap = index::build(&tables, &namespaces, &index_cfg, 1, 1);
    let fqdn = match &target {
        explain::Target::Service { namespace, service } => {
            format!("{service}.{namespace}.svc.{zone_text}")
        }
        explain::Target::Pod {
            namespace,
            service,
            pod,
        } => format!("{pod}.{service}.{namespace}.svc.{zone_text}"),
        explain::Target::Port {
            namespace,
            service,
            port,
            protocol,
        } => format!("_{port}._{protocol}.{service}.{namespace}.svc.{zone_text}"),
    };
    println!("{fqdn}");
    if let Ok(name) = hickory_proto::rr::Name::from_ascii(&fqdn) {
        let lower = hickory_proto::rr::LowerName::new(&name);
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
        ] {
            if let index::Lookup::Found(_, rrset) = snap.lookup(&lower, rtype) {
                for r in rrset.answers.iter() {
                    match &r.data {
                        hickory_proto::rr::RData::TXT(txt) => {
                            let strings: Vec<String> = txt
                                .txt_data
                                .iter()
                                .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
                                .collect();
                            println!("  {} {} IN TXT {}", r.name, r.ttl, strings.join(" "));
                        }
                        _ => println!("  {r}"),
                    }
                }
            }
        }
    }
    println!();
    print!("{}", explain::explain(&target, &tables));
    Ok(0)
}
