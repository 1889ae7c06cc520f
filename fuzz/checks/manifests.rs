//! Manifest text in, a snapshot out: the input is parsed as one manifest file (as
//! `petdns serve --manifests` reads it, so only valid UTF-8, as `read_to_string` requires),
//! and when it parses without errors, it goes through the embedded source (materialised
//! pods, address leases, `reconcile`) to identity tables and an index build. Nothing may
//! panic, abort or run away with memory or time.

use std::collections::BTreeMap;
use std::path::Path;

use hickory_proto::rr::Name;
use petdns::identity::SrvPriority;
use petdns::index::{self, IndexConfig};
use petdns::source::embedded;
use petdns::source::leases::LeaseStore;
use petdns::source::manifests::{self, MAX_REPLICAS, Objects};

/// One input, as the fuzz target and the replay in `tests/fuzz_corpus.rs` give it; panics on
/// a broken invariant.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    manifests::parse_into(
        Path::new("fuzz.yaml"),
        text,
        &mut objects,
        &mut BTreeMap::new(),
        &mut errors,
    );
    for e in &errors {
        // Rendering an error is part of what a rejected load does.
        let _ = e.to_string();
    }
    if !errors.is_empty() {
        return;
    }
    // Large but valid inputs are a matter for the benchmarks (docs/performance.md): a few
    // bytes can declare the maximum of replicas (src/source/manifests.rs, MAX_REPLICAS) in
    // several sets, and building that many identities takes longer than libFuzzer's timeout.
    let replicas: Vec<i32> = objects
        .stateful_sets
        .values()
        .filter_map(|s| s.spec.as_ref()?.replicas)
        .collect();
    assert!(
        replicas.iter().all(|r| (0..=MAX_REPLICAS).contains(r)),
        "the parser let replicas outside 0..={MAX_REPLICAS} through: {replicas:?}"
    );
    if replicas.iter().map(|r| i64::from(*r)).sum::<i64>() > 2_000 {
        return;
    }
    // The default --pod-cidr.
    let mut leases = LeaseStore::in_memory("10.244.0.0/16".parse().expect("static CIDR"));
    let Ok(tables) = embedded::tables(&objects, &mut leases, SrvPriority::Uniform) else {
        return;
    };
    let cfg = IndexConfig {
        zone: Name::from_ascii("cluster.local.").expect("static name"),
        ttl: 5,
        negative_ttl: 5,
        ns_addresses: Vec::new(),
    };
    let snap = index::build(&tables, &objects.all_namespaces(), &cfg, 1, 1);
    std::hint::black_box(snap);
}
