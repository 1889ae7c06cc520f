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

use crate::controller::IdentityState;
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

/// Query counters, indexed by (qtype, rcode).
pub struct DnsMetrics {
    queries: Vec<Counter>,
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
        let r = match rcode {
            ResponseCode::NoError => 0,
            ResponseCode::FormErr => 1,
            ResponseCode::ServFail => 2,
            ResponseCode::NXDomain => 3,
            ResponseCode::NotImp => 4,
            ResponseCode::Refused => 5,
            ResponseCode::BADVERS => 6,
            _ => 7,
        };
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

/// Every metric of the process, and the registry that renders them.
pub struct Metrics {
    pub registry: Registry,
    pub dns: std::sync::Arc<DnsMetrics>,
    pub source: std::sync::Arc<SourceMetrics>,
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

        Metrics {
            registry,
            dns: std::sync::Arc::new(DnsMetrics { queries: handles }),
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
