//! Prometheus metrics. Every label set is created up front, so counting a query is one
//! atomic increment: no label hashing or locking on the query path.

use std::sync::atomic::AtomicU64;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::identity::IdentityState;
use crate::index::SnapshotStats;

const QTYPES: [&str; 11] = [
    "A", "AAAA", "SRV", "PTR", "TXT", "SOA", "NS", "ANY", "AXFR", "IXFR", "other",
];
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// The mnemonic of a response code (`NXDOMAIN`), as metrics and query logs show it.
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    RCODES[rcode_index(rcode)]
}

/// Query counters, indexed by (qtype, rcode).
pub struct DnsMetrics {
    queries: Vec<Counter>,
    /// Questions sent upstream (`--forward`), and those that got no usable answer.
    pub forwarded: Counter,
    pub forward_errors: Counter,
    /// UDP responses not sent, and sent truncated, by response rate limiting (`--rrl-*`).
    pub rrl_dropped: Counter,
    pub rrl_slipped: Counter,
    /// TCP connections accepted, open now, closed to make room at `--tcp-max-connections`,
    /// and refused because every open one was busy answering.
    pub tcp_accepted: Counter,
    pub tcp_open: Gauge,
    pub tcp_closed_at_cap: Counter,
    pub tcp_refused: Counter,
    /// UDP questions answered from a receive loop's answer cache, and those computed and
    /// then kept in it (`--answer-cache-mib`).
    pub answer_cache_hits: Counter,
    pub answer_cache_misses: Counter,
}

impl DnsMetrics {
    pub fn query(&self, qtype: RecordType, rcode: ResponseCode) {
        let t = match qtype {
            RecordType::A => 0,
            RecordType::AAAA => 1,
            RecordType::SRV => 2,
            RecordType::PTR => 3,
            RecordType::TXT => 4,
            RecordType::SOA => 5,
            RecordType::NS => 6,
            RecordType::ANY => 7,
            RecordType::AXFR => 8,
            RecordType::IXFR => 9,
            _ => 10,
        };
        let r = rcode_index(rcode);
        self.queries[t * RCODES.len() + r].inc();
    }
}

/// Counters and gauges of the record source (manifests now, the cluster later).
pub struct SourceMetrics {
    pub reloads: Counter,
    pub reload_errors: Counter,
    pub lease_write_errors: Counter,
    pub generation: Gauge,
    pub names: Gauge,
    pub records: Gauge,
    pub last_reload_seconds: Gauge<f64, AtomicU64>,
    identities: Family<StateLabels, Gauge>,
}

impl SourceMetrics {
    /// Publishes the counts of a new snapshot.
    pub fn snapshot(&self, generation: u64, stats: &SnapshotStats) {
        self.generation.set(generation as i64);
        self.names.set(stats.names as i64);
        self.records.set(stats.records as i64);
        for (state, n) in &stats.identities_by_state {
            self.identities
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(*n as i64);
        }
    }
}

/// Health of the Kubernetes API connection (cluster mode): staleness is visible here.
pub struct KubeMetrics {
    /// Watch stream errors (disconnects, 410 Gone relists, API errors); the watch retries.
    pub watch_errors: Counter,
    /// 1 while every watch is connected and synced, 0 while any is retrying.
    pub watches_healthy: Gauge,
    /// Unix time of the last event or bookmark received from the API server.
    pub last_event_seconds: Gauge<f64, AtomicU64>,
    /// PeerSet writes (server-side apply or delete) by the controller, and failed ones.
    pub writes: Counter,
    pub write_errors: Counter,
    /// PeerSlice writes (server-side apply or delete) by the controller.
    pub slice_writes: Counter,
    /// PeerSets rejected by a DNS server because their content is invalid.
    pub invalid_peersets: Counter,
    /// PeerSlices rejected whole by a DNS server because their content is invalid.
    pub invalid_peerslices: Counter,
    /// 1 while this controller replica holds the leader lease.
    pub leader: Gauge,
}

/// Every metric of the process, and the registry that renders them.
pub struct Metrics {
    pub registry: Registry,
    pub dns: std::sync::Arc<DnsMetrics>,
    pub source: std::sync::Arc<SourceMetrics>,
    pub kube: std::sync::Arc<KubeMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("petdns");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register(
            "dns_queries",
            "DNS queries answered, by question type and response code",
            queries.clone(),
        );
        let mut handles = Vec::with_capacity(QTYPES.len() * RCODES.len());
        for qtype in QTYPES {
            for rcode in RCODES {
                handles.push(queries.get_or_create(&QueryLabels { qtype, rcode }).clone());
            }
        }

        let dns = DnsMetrics {
            queries: handles,
            forwarded: Counter::default(),
            forward_errors: Counter::default(),
            rrl_dropped: Counter::default(),
            rrl_slipped: Counter::default(),
            tcp_accepted: Counter::default(),
            tcp_open: Gauge::default(),
            tcp_closed_at_cap: Counter::default(),
            tcp_refused: Counter::default(),
            answer_cache_hits: Counter::default(),
            answer_cache_misses: Counter::default(),
        };
        registry.register(
            "dns_forwarded",
            "Questions forwarded upstream (--forward)",
            dns.forwarded.clone(),
        );
        registry.register(
            "dns_forward_errors",
            "Forwarded questions that got no usable answer (answered SERVFAIL)",
            dns.forward_errors.clone(),
        );
        registry.register(
            "dns_rrl_dropped",
            "UDP responses dropped by response rate limiting (--rrl-responses-per-second)",
            dns.rrl_dropped.clone(),
        );
        registry.register(
            "dns_rrl_slipped",
            "UDP responses sent truncated (TC=1) instead of dropped by response rate limiting (--rrl-slip)",
            dns.rrl_slipped.clone(),
        );
        registry.register(
            "dns_tcp_connections_accepted",
            "TCP connections accepted",
            dns.tcp_accepted.clone(),
        );
        registry.register(
            "dns_tcp_connections_open",
            "TCP connections open now",
            dns.tcp_open.clone(),
        );
        registry.register(
            "dns_tcp_connections_closed_at_cap",
            "Idle TCP connections closed to make room for a new one at --tcp-max-connections",
            dns.tcp_closed_at_cap.clone(),
        );
        registry.register(
            "dns_tcp_connections_refused",
            "TCP connections refused at --tcp-max-connections because every open one was busy",
            dns.tcp_refused.clone(),
        );
        registry.register(
            "dns_answer_cache_hits",
            "UDP questions answered from the answer cache (exact: emptied at every new snapshot)",
            dns.answer_cache_hits.clone(),
        );
        registry.register(
            "dns_answer_cache_misses",
            "UDP questions answered from the index and kept in the answer cache",
            dns.answer_cache_misses.clone(),
        );
        let source = SourceMetrics {
            reloads: Counter::default(),
            reload_errors: Counter::default(),
            lease_write_errors: Counter::default(),
            generation: Gauge::default(),
            names: Gauge::default(),
            records: Gauge::default(),
            last_reload_seconds: Gauge::default(),
            identities: Family::default(),
        };
        registry.register(
            "reloads",
            "Successful loads of the record source",
            source.reloads.clone(),
        );
        registry.register(
            "reload_errors",
            "Loads rejected because the input was invalid (the previous state keeps serving)",
            source.reload_errors.clone(),
        );
        registry.register(
            "lease_write_errors",
            "Failed writes of the address lease file",
            source.lease_write_errors.clone(),
        );
        registry.register(
            "snapshot_generation",
            "Generation of the record snapshot being served",
            source.generation.clone(),
        );
        registry.register(
            "snapshot_names",
            "Names in the record snapshot being served",
            source.names.clone(),
        );
        registry.register(
            "snapshot_records",
            "Records in the record snapshot being served",
            source.records.clone(),
        );
        registry.register(
            "last_reload_timestamp_seconds",
            "Unix time of the last successful load",
            source.last_reload_seconds.clone(),
        );
        registry.register(
            "identities",
            "StatefulSet identities, by state",
            source.identities.clone(),
        );
        for state in IdentityState::ALL {
            let _ = source.identities.get_or_create(&StateLabels {
                state: state.as_str(),
            });
        }

        let kube = KubeMetrics {
            watch_errors: Counter::default(),
            watches_healthy: Gauge::default(),
            last_event_seconds: Gauge::default(),
            writes: Counter::default(),
            write_errors: Counter::default(),
            slice_writes: Counter::default(),
            invalid_peersets: Counter::default(),
            invalid_peerslices: Counter::default(),
            leader: Gauge::default(),
        };
        registry.register(
            "kube_watch_errors",
            "Kubernetes watch errors (each is retried with backoff)",
            kube.watch_errors.clone(),
        );
        registry.register(
            "kube_watches_healthy",
            "1 while every Kubernetes watch is connected and synced",
            kube.watches_healthy.clone(),
        );
        registry.register(
            "kube_last_event_timestamp_seconds",
            "Unix time of the last watch event or watch error seen from the API server",
            kube.last_event_seconds.clone(),
        );
        registry.register(
            "peerset_writes",
            "PeerSet writes by the controller",
            kube.writes.clone(),
        );
        registry.register(
            "peerset_write_errors",
            "Failed PeerSet writes by the controller (retried)",
            kube.write_errors.clone(),
        );
        registry.register(
            "invalid_peersets",
            "PeerSets rejected because their content is invalid (the previous state keeps serving)",
            kube.invalid_peersets.clone(),
        );
        registry.register(
            "peerslice_writes",
            "PeerSlice writes by the controller (server-side apply or delete)",
            kube.slice_writes.clone(),
        );
        registry.register(
            "invalid_peerslices",
            "PeerSlices rejected whole because their content is invalid (the slice's previous state keeps serving)",
            kube.invalid_peerslices.clone(),
        );
        registry.register(
            "leader",
            "1 while this controller holds the leader lease",
            kube.leader.clone(),
        );

        Metrics {
            registry,
            kube: std::sync::Arc::new(kube),
            dns: std::sync::Arc::new(dns),
            source: std::sync::Arc::new(source),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
