//! Validated configuration: raw flags from [`crate::cli`] become these types, or a clear error.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::controller::SrvPriority;
use crate::dns::RrlConfig;

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
    #[error("no --state-dir given and neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
}

/// An IPv4 or IPv6 prefix such as `10.244.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    fn as_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn ip_of(&self, n: u128) -> IpAddr {
        if self.addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(n))
        }
    }

    fn host_bits(&self) -> u32 {
        self.bits() - self.prefix as u32
    }

    fn network(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 {
            0
        } else {
            (Self::as_u128(self.addr) >> hb) << hb
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && {
            let hb = self.host_bits();
            hb >= 128 || (Self::as_u128(ip) >> hb) == (self.network() >> hb)
        }
    }

    /// Usable host addresses in ascending order: without the network address, and for IPv4
    /// prefixes shorter than /31 without the broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let hb = self.host_bits();
        let size: u128 = if hb >= 128 { u128::MAX } else { 1u128 << hb };
        let (first, last) = if size <= 2 {
            (0, size - 1)
        } else if self.addr.is_ipv4() {
            (1, size - 2)
        } else {
            (1, size - 1)
        };
        let net = self.network();
        (first..=last).map(move |i| self.ip_of(net + i))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip_of(self.network()), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR such as 10.244.0.0/16"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than /{max}"));
        }
        Ok(Cidr { addr, prefix })
    }
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
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts_skip_network_and_broadcast() {
        let c: Cidr = "192.0.2.0/30".parse().unwrap();
        let hosts: Vec<String> = c.hosts().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["192.0.2.1", "192.0.2.2"]);
        assert!(c.contains("192.0.2.3".parse().unwrap()));
        assert!(!c.contains("192.0.2.4".parse().unwrap()));
        let v6: Cidr = "2001:db8::/64".parse().unwrap();
        assert_eq!(v6.hosts().next().unwrap().to_string(), "2001:db8::1");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            "10.244.1.7/16".parse::<Cidr>().unwrap().to_string(),
            "10.244.0.0/16"
        );
    }

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
