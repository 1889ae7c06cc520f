//! Validated configuration: raw flags from [`crate::cli`] become these types, or a clear error.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::time::Duration;

use hickory_proto::rr::Name;

use crate::dns::RrlConfig;
use crate::identity::SrvPriority;

use crate::cidr::Cidr;
use crate::cli::{CheckArgs, ControllerArgs, ServeArgs};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--zone {0:?} is not a valid DNS name: {1}")]
    Zone(String, String),
    #[error("--ttl and --negative-ttl must be at most 3600 seconds (got {0})")]
    Ttl(u32),
    #[error("--manifests is required (or PETDNS_MANIFESTS)")]
    NoManifests,
    #[error("--manifests: {0}")]
    Manifests(String),
    #[error("--lease-seconds must be between 3 and 300 (got {0})")]
    LeaseSeconds(u64),
    #[error("--slice-size must be between 1 and {max} (got {0})", max = crate::identity::MAX_SLICE_SIZE)]
    SliceSize(i32),
    #[error("no --state-dir given and neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
}

/// Where `petdns serve` gets its identity tables.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// Manifest paths, and the directory that keeps address leases.
    Manifests {
        paths: Vec<PathBuf>,
        state_dir: PathBuf,
    },
    Kube {
        kubeconfig: Option<PathBuf>,
        namespaces: Vec<String>,
    },
}

/// Everything `petdns serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub source: SourceConfig,
    pub listen: SocketAddr,
    pub zone: Name,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub pod_cidr: Cidr,
    pub admin: SocketAddr,
    pub advertise: Vec<IpAddr>,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
    pub srv_priority: SrvPriority,
    /// `--forward`: upstream servers, or `auto` for /etc/resolv.conf.
    pub forward: Vec<crate::cli::ForwardTarget>,
    pub log_queries: bool,
    pub udp_sockets: usize,
    /// Bytes of answer cache per UDP socket (0: none).
    pub answer_cache_bytes: usize,
    pub tcp_max_connections: usize,
    /// Response rate limiting for UDP; `None` when `--rrl-responses-per-second` is 0.
    pub rrl: Option<RrlConfig>,
}

/// Everything `petdns check` needs.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub manifests: Vec<PathBuf>,
    pub srv_priority: SrvPriority,
    pub pod_cidr: Cidr,
    pub state_dir: Option<PathBuf>,
}

pub fn parse_zone(zone: &str) -> Result<Name, ConfigError> {
    let text = if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    };
    let name =
        Name::from_ascii(&text).map_err(|e| ConfigError::Zone(zone.into(), e.to_string()))?;
    if name.is_root() {
        return Err(ConfigError::Zone(
            zone.into(),
            "the root zone cannot be served".into(),
        ));
    }
    Ok(name.to_lowercase())
}

/// `$XDG_STATE_HOME/petdns`, else `~/.local/state/petdns`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("petdns"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/petdns"))
}

impl ServeConfig {
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let source = if args.source.kube {
            SourceConfig::Kube {
                kubeconfig: args.source.kubeconfig.clone(),
                namespaces: args.namespaces.clone(),
            }
        } else if args.source.manifests.is_empty() {
            return Err(ConfigError::NoManifests);
        } else {
            // Only the embedded source keeps state: cluster mode must not need a writable home.
            let state_dir = match &args.leases.state_dir {
                Some(d) => d.clone(),
                None => default_state_dir().ok_or(ConfigError::NoStateDir)?,
            };
            SourceConfig::Manifests {
                paths: args.source.manifests.clone(),
                state_dir,
            }
        };
        for ttl in [args.ttl, args.negative_ttl] {
            if ttl > 3600 {
                return Err(ConfigError::Ttl(ttl));
            }
        }
        let advertise = if args.advertise.is_empty() && !args.listen.ip().is_unspecified() {
            vec![args.listen.ip()]
        } else {
            args.advertise.clone()
        };
        Ok(ServeConfig {
            source,
            listen: args.listen,
            zone: parse_zone(&args.zone)?,
            ttl: args.ttl,
            negative_ttl: args.negative_ttl,
            pod_cidr: args.leases.pod_cidr,
            admin: args.admin,
            advertise,
            max_udp_payload: args.max_udp_payload.clamp(512, 4096),
            tcp_idle_timeout: Duration::from_secs(args.tcp_idle_timeout.max(1)),
            srv_priority: args.srv_priority.into(),
            forward: args.forward.clone(),
            log_queries: args.log_queries,
            udp_sockets: args
                .udp_sockets
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .clamp(1, 64),
            answer_cache_bytes: args.answer_cache_mib as usize * 1024 * 1024,
            tcp_max_connections: args.tcp_max_connections.max(1),
            rrl: (args.rrl_responses_per_second > 0).then_some(RrlConfig {
                responses_per_second: args.rrl_responses_per_second,
                slip: args.rrl_slip,
                ipv4_prefix: args.rrl_ipv4_prefix,
                ipv6_prefix: args.rrl_ipv6_prefix,
            }),
        })
    }
}

impl CheckConfig {
    pub fn from_args(args: &CheckArgs) -> Result<Self, ConfigError> {
        if args.manifests.is_empty() {
            return Err(ConfigError::NoManifests);
        }
        Ok(CheckConfig {
            manifests: args.manifests.clone(),
            srv_priority: args.srv_priority.into(),
            pod_cidr: args.leases.pod_cidr,
            state_dir: args.leases.state_dir.clone().or_else(default_state_dir),
        })
    }
}

/// Everything `petdns controller` needs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub kubeconfig: Option<PathBuf>,
    pub admin: SocketAddr,
    pub run: crate::controller::run::ControllerConfig,
}

impl ControllerConfig {
    pub fn from_args(args: &ControllerArgs) -> Result<Self, ConfigError> {
        if !(3..=300).contains(&args.lease_seconds) {
            return Err(ConfigError::LeaseSeconds(args.lease_seconds));
        }
        if !(1..=crate::identity::MAX_SLICE_SIZE).contains(&args.slice_size) {
            return Err(ConfigError::SliceSize(args.slice_size));
        }
        let identity = args
            .identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
        Ok(ControllerConfig {
            kubeconfig: args.kubeconfig.clone(),
            admin: args.admin,
            run: crate::controller::run::ControllerConfig {
                lease_namespace: args.lease_namespace.clone(),
                lease_name: args.lease_name.clone(),
                identity,
                lease_seconds: args.lease_seconds,
                srv_priority: args.srv_priority.into(),
                slice_size: args.slice_size,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `petdns serve --manifests x.yaml <extra>` as configuration, or the error text.
    fn serve(extra: &[&str]) -> Result<ServeConfig, String> {
        use clap::Parser;
        let mut args = vec![
            "petdns",
            "serve",
            "--manifests",
            "x.yaml",
            "--state-dir",
            "/nonexistent",
        ];
        args.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            crate::cli::Command::Serve(a) => ServeConfig::from_args(&a).map_err(|e| e.to_string()),
            other => Err(format!("not serve: {other:?}")),
        }
    }

    #[test]
    fn rrl_is_off_unless_a_rate_is_given() {
        assert_eq!(serve(&[]).unwrap().rrl, None);
        assert_eq!(
            serve(&["--rrl-responses-per-second", "0", "--rrl-slip", "5"])
                .unwrap()
                .rrl,
            None
        );
        assert_eq!(
            serve(&["--rrl-responses-per-second", "20"]).unwrap().rrl,
            Some(RrlConfig {
                responses_per_second: 20,
                slip: 2,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
            })
        );
        let cfg = serve(&[
            "--rrl-responses-per-second",
            "5",
            "--rrl-slip",
            "0",
            "--rrl-ipv4-prefix",
            "32",
            "--rrl-ipv6-prefix",
            "128",
        ])
        .unwrap();
        assert_eq!(
            cfg.rrl,
            Some(RrlConfig {
                responses_per_second: 5,
                slip: 0,
                ipv4_prefix: 32,
                ipv6_prefix: 128,
            })
        );
        for bad in [
            ["--rrl-ipv4-prefix", "33"],
            ["--rrl-ipv6-prefix", "129"],
            ["--rrl-slip", "11"],
            ["--rrl-responses-per-second", "-1"],
            ["--rrl-responses-per-second", "1000001"],
        ] {
            assert!(serve(&bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn zone_is_normalised() {
        assert_eq!(
            parse_zone("Cluster.Local").unwrap().to_string(),
            "cluster.local."
        );
        assert!(parse_zone(".").is_err());
    }
}
