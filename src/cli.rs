//! Command-line flags (raw), each with a `PETDNS_*` environment fallback. Validation into
//! typed configuration happens in [`crate::config`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cidr::Cidr;

#[derive(Debug, Parser)]
#[command(
    name = "petdns",
    version,
    about = "DNS for StatefulSet identities and headless Services",
    propagate_version = true
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "PETDNS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// One `--forward` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardTarget {
    /// The nameservers of /etc/resolv.conf.
    Auto,
    Addr(SocketAddr),
}

impl std::str::FromStr for ForwardTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(ForwardTarget::Auto);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ForwardTarget::Addr(addr));
        }
        s.parse::<IpAddr>()
            .map(|ip| ForwardTarget::Addr(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{s:?} is not `auto`, an IP address or IP:PORT"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SrvPriorityArg {
    Uniform,
    Ordinal,
}

impl From<SrvPriorityArg> for crate::identity::SrvPriority {
    fn from(a: SrvPriorityArg) -> Self {
        match a {
            SrvPriorityArg::Uniform => crate::identity::SrvPriority::Uniform,
            SrvPriorityArg::Ordinal => crate::identity::SrvPriority::Ordinal,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS for the StatefulSets in Kubernetes manifests, reloading them on change.
    Serve(ServeArgs),
    /// Validate manifests and print the identity table; exit 2 with every error.
    Check(CheckArgs),
    /// Explain what a name answers and why, or why not, with the fix.
    Explain(ExplainArgs),
    /// Run the companion controller: keep one PeerSet per StatefulSet (cluster mode).
    Controller(ControllerArgs),
    /// Print the PeerSet CustomResourceDefinition as YAML.
    Crd,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of petdns, or of one command (`petdns man serve`).
    Man {
        /// serve, check, explain, controller, crd, completions.
        command: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["manifests", "kube"])))]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub leases: LeaseArgs,

    /// With --kube: only these namespaces (repeatable) [default: all].
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "PETDNS_NAMESPACES",
        value_delimiter = ',',
        requires = "kube"
    )]
    pub namespaces: Vec<String>,

    /// DNS address, UDP and TCP (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        env = "PETDNS_LISTEN",
        default_value = "127.0.0.1:5353"
    )]
    pub listen: SocketAddr,

    /// The cluster domain served.
    #[arg(long, env = "PETDNS_ZONE", default_value = "cluster.local")]
    pub zone: String,

    /// TTL of answers, in seconds.
    #[arg(long, env = "PETDNS_TTL", default_value_t = 5)]
    pub ttl: u32,

    /// TTL of negative answers (SOA TTL and MINIMUM), in seconds.
    #[arg(long, env = "PETDNS_NEGATIVE_TTL", default_value_t = 5)]
    pub negative_ttl: u32,

    /// SRV priority for Services without a `petdns.io/srv-priority` annotation: `ordinal` makes
    /// it ordinal - start, so clients try the lowest ordinal first.
    #[arg(long, value_enum, env = "PETDNS_SRV_PRIORITY", default_value_t = SrvPriorityArg::Uniform)]
    pub srv_priority: SrvPriorityArg,

    /// Admin HTTP address: /healthz, /readyz, /metrics (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        env = "PETDNS_ADMIN",
        default_value = "127.0.0.1:9153"
    )]
    pub admin: SocketAddr,

    /// Address answered for ns.dns.<zone> (repeatable) [default: the --listen address unless unspecified].
    #[arg(
        long,
        value_name = "IP",
        env = "PETDNS_ADVERTISE",
        value_delimiter = ','
    )]
    pub advertise: Vec<IpAddr>,

    /// Upstream server for names petdns does not own (repeatable): `IP`, `IP:PORT`, or `auto`
    /// for the nameservers of /etc/resolv.conf. Without it, names outside the zones are REFUSED.
    #[arg(
        long = "forward",
        value_name = "ADDR",
        env = "PETDNS_FORWARD",
        value_delimiter = ','
    )]
    pub forward: Vec<ForwardTarget>,

    /// Log one line per query (source, name, type, response code); off by default.
    #[arg(long, env = "PETDNS_LOG_QUERIES")]
    pub log_queries: bool,

    /// Largest UDP response, and the EDNS payload size advertised.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PETDNS_MAX_UDP_PAYLOAD",
        default_value_t = 1232
    )]
    pub max_udp_payload: u16,

    /// UDP sockets sharing the port (SO_REUSEPORT), one receive loop each [default: one per CPU].
    #[arg(long, value_name = "N", env = "PETDNS_UDP_SOCKETS")]
    pub udp_sockets: Option<usize>,

    /// Answer cache of each UDP socket, in MiB: questions asked again are answered from it.
    /// Exact: emptied whenever the served data changes. 0 turns it off.
    #[arg(
        long,
        value_name = "MIB",
        env = "PETDNS_ANSWER_CACHE_MIB",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(0..=1024)
    )]
    pub answer_cache_mib: u32,

    /// Open TCP connections at most; at the cap the longest-idle one is closed for a new one.
    #[arg(
        long,
        value_name = "N",
        env = "PETDNS_TCP_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub tcp_max_connections: usize,

    /// Seconds an idle TCP connection is kept open.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "PETDNS_TCP_IDLE_TIMEOUT",
        default_value_t = 10
    )]
    pub tcp_idle_timeout: u64,

    /// Response rate limiting: UDP responses per second per client prefix; beyond it responses
    /// are dropped or slipped (--rrl-slip). TCP is never limited. 0 turns it off.
    #[arg(
        long,
        value_name = "N",
        env = "PETDNS_RRL_RESPONSES_PER_SECOND",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=1_000_000)
    )]
    pub rrl_responses_per_second: u32,

    /// With rate limiting: every Nth limited response is sent truncated (TC=1, no records) so
    /// that real clients ask again over TCP; 0 drops them all, 1 truncates them all.
    #[arg(
        long,
        value_name = "N",
        env = "PETDNS_RRL_SLIP",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(0..=10)
    )]
    pub rrl_slip: u32,

    /// With rate limiting: IPv4 clients sharing a prefix of this length count as one.
    #[arg(
        long,
        value_name = "BITS",
        env = "PETDNS_RRL_IPV4_PREFIX",
        default_value_t = 24,
        value_parser = clap::value_parser!(u8).range(0..=32)
    )]
    pub rrl_ipv4_prefix: u8,

    /// With rate limiting: IPv6 clients sharing a prefix of this length count as one.
    #[arg(
        long,
        value_name = "BITS",
        env = "PETDNS_RRL_IPV6_PREFIX",
        default_value_t = 56,
        value_parser = clap::value_parser!(u8).range(0..=128)
    )]
    pub rrl_ipv6_prefix: u8,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub leases: LeaseArgs,

    /// Manifest file or directory (repeatable; the env var takes a comma-separated list).
    #[arg(
        long = "manifests",
        value_name = "PATH",
        env = "PETDNS_MANIFESTS",
        value_delimiter = ',',
        required = true
    )]
    pub manifests: Vec<PathBuf>,

    /// SRV priority for Services without a `petdns.io/srv-priority` annotation: `ordinal` makes
    /// it ordinal - start, so clients try the lowest ordinal first.
    #[arg(long, value_enum, env = "PETDNS_SRV_PRIORITY", default_value_t = SrvPriorityArg::Uniform)]
    pub srv_priority: SrvPriorityArg,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Kubeconfig file [default: in-cluster config, else KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "PATH", env = "PETDNS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Admin HTTP address: /healthz, /readyz, /metrics.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PETDNS_ADMIN",
        default_value = "127.0.0.1:9154"
    )]
    pub admin: SocketAddr,

    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        value_name = "NS",
        env = "POD_NAMESPACE",
        default_value = "petdns"
    )]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        value_name = "NAME",
        env = "PETDNS_LEASE_NAME",
        default_value = "petdns-controller"
    )]
    pub lease_name: String,

    /// This replica's identity in the Lease [default: POD_NAME, else host name and process id].
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    pub identity: Option<String>,

    /// SRV priority for Services without a `petdns.io/srv-priority` annotation: `ordinal` makes
    /// it ordinal - start, so clients try the lowest ordinal first.
    #[arg(long, value_enum, env = "PETDNS_SRV_PRIORITY", default_value_t = SrvPriorityArg::Uniform)]
    pub srv_priority: SrvPriorityArg,

    /// Lease duration in seconds: a crashed leader is replaced after about this long.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "PETDNS_LEASE_SECONDS",
        default_value_t = 15
    )]
    pub lease_seconds: u64,

    /// Identities per PeerSlice (at most 1000): one pod's change rewrites the slice of its
    /// ordinal, and every DNS server receives that slice.
    #[arg(
        long,
        value_name = "N",
        env = "PETDNS_SLICE_SIZE",
        default_value_t = crate::identity::DEFAULT_SLICE_SIZE
    )]
    pub slice_size: i32,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["manifests", "kube"])))]
pub struct ExplainArgs {
    /// A pod name (`web-0.nginx.default.svc.cluster.local` or `web-0.nginx.default`), a Service
    /// (`nginx.default`, or `nginx` in namespace default) or a port (`_web._tcp.nginx.default`).
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub leases: LeaseArgs,

    /// The cluster domain.
    #[arg(long, env = "PETDNS_ZONE", default_value = "cluster.local")]
    pub zone: String,
}

/// Where identity tables come from: manifests, or the cluster's PeerSets.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Manifest file or directory (repeatable; the env var takes a comma-separated list).
    #[arg(
        long = "manifests",
        value_name = "PATH",
        env = "PETDNS_MANIFESTS",
        value_delimiter = ','
    )]
    pub manifests: Vec<PathBuf>,

    /// Use the cluster's PeerSets (written by `petdns controller`) instead of manifests.
    #[arg(long, env = "PETDNS_KUBE", conflicts_with = "manifests")]
    pub kube: bool,

    /// Kubeconfig file [default: in-cluster config, else KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "PATH", env = "PETDNS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// Addresses of materialised pods (manifests only).
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Prefix addresses of materialised pods are leased from (IPv4 or IPv6).
    #[arg(
        long,
        value_name = "CIDR",
        env = "PETDNS_POD_CIDR",
        default_value = "10.244.0.0/16"
    )]
    pub pod_cidr: Cidr,

    /// Where address leases are kept; check and explain only read them [default:
    /// $XDG_STATE_HOME/petdns, else ~/.local/state/petdns].
    #[arg(long, value_name = "DIR", env = "PETDNS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}
