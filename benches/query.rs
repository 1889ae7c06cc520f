//! Criterion benchmarks: the query path on a prepared packet (the fast path the UDP and TCP
//! listeners take, and the hickory path everything else takes), the index build, and the
//! incremental update after one pod's readiness change.
//!
//! `cargo bench --bench query`

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use petdns::admin::Metrics;
use petdns::dns::{Authority, Capture, Scratch};
use petdns::identity::{IdentityState, IdentityTable};
use petdns::index::{self, IndexConfig, Indexer, Snapshot};

mod common;
use common::{Shape, tables};

/// Addresses only, as in the zone files Knot serves.
const IPV4: Shape = Shape {
    v6: false,
    full: false,
};

fn config() -> IndexConfig {
    IndexConfig {
        zone: Name::from_ascii("cluster.local.").unwrap(),
        ttl: 5,
        negative_ttl: 5,
        ns_addresses: vec![],
    }
}

fn snapshot(tables: &[IdentityTable]) -> Snapshot {
    let namespaces: BTreeSet<String> = tables.iter().map(|t| t.namespace.clone()).collect();
    index::build(tables, &namespaces, &config(), 1, 1)
}

fn packet(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    // dig's default: EDNS with a 1232-byte payload, so a 10-target SRV answer fits over UDP.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

fn bench_query(c: &mut Criterion) {
    let t = tables(1000, 10, IPV4);
    let metrics = Metrics::new();
    let authority = Authority::new(
        Arc::new(ArcSwap::from_pointee(snapshot(&t))),
        metrics.dns.clone(),
        1232,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut group = c.benchmark_group("query (10,000 identities)");
    for (what, name, rtype) in [
        (
            "pod A",
            "svc-3-7.svc-3.ns-42.svc.cluster.local.",
            RecordType::A,
        ),
        (
            "_http._tcp SRV",
            "_http._tcp.svc-3.ns-42.svc.cluster.local.",
            RecordType::SRV,
        ),
        ("NXDOMAIN", "nosuch.ns-42.svc.cluster.local.", RecordType::A),
        (
            "NODATA",
            "svc-3-7.svc-3.ns-42.svc.cluster.local.",
            RecordType::MX,
        ),
    ] {
        let raw = packet(name, rtype);
        let (mut out, mut key) = (Vec::with_capacity(4096), Scratch::new());
        assert!(authority.fast_answer(&raw, &mut out, &mut key, false));
        group.bench_function(format!("{what}, fast path"), |b| {
            b.iter(|| authority.fast_answer(&raw, &mut out, &mut key, false))
        });
        let mut cached = Scratch::with_cache(8 << 20);
        assert!(authority.fast_answer(&raw, &mut out, &mut cached, false));
        group.bench_function(format!("{what}, fast path, answer cached"), |b| {
            b.iter(|| authority.fast_answer(&raw, &mut out, &mut cached, false))
        });
        group.bench_function(format!("{what}, hickory path"), |b| {
            b.iter(|| {
                let request = Request::from_bytes(raw.clone(), src, Protocol::Udp).unwrap();
                rt.block_on(authority.handle_request::<_, TokioTime>(&request, Capture::udp()))
            })
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    let t = tables(10_000, 10, IPV4);
    group.bench_function("build, 100,000 identities", |b| b.iter(|| snapshot(&t)));
    // One pod's readiness flips back and forth: only its Service is rebuilt, and the new
    // snapshot shares everything else with the previous one.
    let namespaces: BTreeSet<String> = t.iter().map(|t| t.namespace.clone()).collect();
    let mut indexer = Indexer::new(config());
    indexer.load(t.clone(), namespaces);
    let ready = t[5000].clone();
    let mut not_ready = ready.clone();
    not_ready.identities[3].published = false;
    not_ready.identities[3].state = IdentityState::NotReady;
    let mut flip = false;
    group.bench_function(
        "update after one readiness change, 100,000 identities",
        |b| {
            b.iter(|| {
                flip = !flip;
                let table = if flip { &not_ready } else { &ready };
                indexer.apply(vec![table.clone()], vec![]);
                indexer.snapshot(2, 2)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_query, bench_build);
criterion_main!(benches);
