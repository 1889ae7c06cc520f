//! Forwarding: names petdns does not own go to upstream servers, through hickory's resolver
//! (with its cache), so petdns can be a pod's only nameserver.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Entries in the forwarder's answer cache.
const CACHE_SIZE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot read the system resolver configuration: {0}")]
    System(String),
    #[error("cannot build the forwarding resolver: {0}")]
    Build(String),
    #[error("/etc/resolv.conf lists no nameserver to forward to")]
    NoUpstream,
}

/// What an upstream said.
pub enum Forwarded {
    Answer(Vec<Record>),
    /// NXDOMAIN or NODATA, with the upstream's SOA when it sent one.
    Negative(ResponseCode, Option<Box<Record>>),
    /// No usable answer (timeout, SERVFAIL, REFUSED upstream).
    Failed(String),
}

pub struct Forwarder {
    resolver: TokioResolver,
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    /// Forwards to these servers (UDP, TCP on truncation), tried in order of response time.
    pub fn new(upstreams: &[SocketAddr]) -> Result<Self, ForwardError> {
        let servers = upstreams
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        Self::build(
            ResolverConfig::from_name_servers(servers),
            upstreams.to_vec(),
        )
    }

    /// Forwards to the nameservers of `/etc/resolv.conf` (`--forward auto`), except `ourselves`
    /// (a resolv.conf that lists petdns would loop).
    pub fn from_system(ourselves: SocketAddr) -> Result<Self, ForwardError> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ForwardError::System(e.to_string()))?;
        let upstreams: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .flat_map(|ns| {
                ns.connections
                    .iter()
                    .map(move |c| SocketAddr::new(ns.ip, c.port))
            })
            .filter(|a| *a != ourselves)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        Self::new(&upstreams)
    }

    fn build(config: ResolverConfig, upstreams: Vec<SocketAddr>) -> Result<Self, ForwardError> {
        let mut opts = ResolverOpts::default();
        opts.cache_size = CACHE_SIZE;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.preserve_intermediates = true;
        opts.recursion_desired = true;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ForwardError::Build(e.to_string()))?;
        Ok(Forwarder {
            resolver,
            upstreams,
        })
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    pub async fn forward(&self, name: &Name, rtype: RecordType) -> Forwarded {
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(lookup) => Forwarded::Answer(lookup.answers().to_vec()),
            Err(e) if e.is_no_records_found() => {
                let code = if e.is_nx_domain() {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let soa = e.into_soa().map(|soa| {
                    let soa = *soa;
                    Box::new(Record::from_rdata(
                        soa.name.clone(),
                        soa.ttl,
                        RData::SOA(soa.data),
                    ))
                });
                Forwarded::Negative(code, soa)
            }
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }
}
