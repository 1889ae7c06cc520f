//! Where the bytes of 100,000 identities go: the heap each part of `petdns serve` keeps, counted
//! by a counting allocator around the system's (so allocator slack is not included; the RSS
//! figures of docs/performance.md include it).
//!
//! `cargo bench --bench memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use hickory_proto::rr::Name;
use petdns::cidr::Cidr;
use petdns::identity::{IdentityTable, SrvPriority};
use petdns::index::{IndexConfig, Indexer, Snapshot};
use petdns::source::leases::{LeaseError, LeaseStore};
use petdns::source::{ManifestSource, Publish};

mod common;
use common::{Shape, tables};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap live after `f`, with what `f` returns kept.
fn kept<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let before = live();
    let t = f();
    (t, live() - before)
}

/// Publishes into an indexer and keeps the snapshot, as `petdns serve` does.
struct Keep {
    indexer: Indexer,
    snapshot: Option<Arc<Snapshot>>,
}

impl Publish for Keep {
    fn loaded(&mut self, tables: Vec<IdentityTable>, namespaces: BTreeSet<String>) {
        self.indexer.load(tables, namespaces);
        self.snapshot = Some(Arc::new(self.indexer.snapshot(1, 1)));
    }
    fn changed(&mut self, _: Vec<IdentityTable>, _: Vec<(String, String)>) {
        unreachable!("a manifest source publishes whole loads")
    }
    fn rejected(&mut self) {
        panic!("the generated manifests were rejected")
    }
    fn lease_write_failed(&mut self, _: &LeaseError) {}
}

/// The benchmark's materialised cluster (`bench/gen_manifests.py`): `sets` StatefulSets of
/// `pods`, 10 per namespace, each with its headless Service, no Pods.
fn materialised_manifests(sets: usize, pods: usize) -> String {
    let mut y = String::new();
    for s in 0..sets {
        let (ns, svc) = (s / 10, s % 10);
        if svc == 0 {
            writeln!(
                y,
                r#"---
{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"ns-{ns}"}}}}"#
            )
            .unwrap();
        }
        writeln!(y, r#"---
{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{svc}","namespace":"ns-{ns}"}},"spec":{{"clusterIP":"None","selector":{{"app":"svc-{svc}"}},"ports":[{{"name":"http","port":80,"protocol":"TCP"}}]}}}}
---
{{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{{"name":"svc-{svc}","namespace":"ns-{ns}"}},"spec":{{"serviceName":"svc-{svc}","replicas":{pods},"selector":{{"matchLabels":{{"app":"svc-{svc}"}}}},"template":{{"metadata":{{"labels":{{"app":"svc-{svc}"}}}},"spec":{{"containers":[{{"name":"app","image":"registry.example/app:1"}}]}}}}}}}}"#).unwrap();
    }
    y
}

fn main() {
    let config = IndexConfig {
        zone: Name::from_ascii("cluster.local.").unwrap(),
        ttl: 5,
        negative_ttl: 5,
        ns_addresses: vec![],
    };
    for (label, v6, sets, pods) in [
        ("IPv4", false, 10_000, 10),
        ("dual-stack", true, 10_000, 10),
        ("IPv4", false, 1_000, 100),
        ("dual-stack", true, 1_000, 100),
    ] {
        // The tables and namespaces go into the indexer and are dropped there: their bytes
        // are added back.
        let start = live();
        let t = tables(sets, pods, Shape { v6, full: true });
        let namespaces: BTreeSet<String> = t.iter().map(|t| t.namespace.clone()).collect();
        let input = live() - start;
        let before = live();
        let mut indexer = Indexer::new(config.clone());
        indexer.load(t, namespaces);
        let snapshot = indexer.snapshot(1, 1);
        let index = live() - before + input;
        println!(
            "index, {label}, 100,000 identities in {sets} sets of {pods}: {index} bytes, {} B per identity",
            index / 100_000
        );
        drop(snapshot);
        drop(indexer);
    }

    let cidr: Cidr = "10.0.0.0/8".parse().unwrap();
    let (leases, bytes) = kept(|| {
        let mut store = LeaseStore::in_memory(cidr);
        for s in 0..10_000 {
            for o in 0..10 {
                store
                    .lease(&format!("ns-{}", s / 10), &format!("svc-{}", s % 10), o)
                    .unwrap();
            }
        }
        store
    });
    println!(
        "leases, 100,000 in 10,000 sets of 10: {bytes} bytes, {} B per identity",
        bytes / 100_000
    );
    drop(leases);

    // The whole manifest source as `petdns serve --manifests` keeps it after a load: the
    // leases, the index, the snapshot and the source's own bookkeeping (the parse is freed).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, materialised_manifests(10_000, 10)).unwrap();
    let (source, bytes) = kept(|| {
        let keep = Keep {
            indexer: Indexer::new(config.clone()),
            snapshot: None,
        };
        let mut source = ManifestSource::new(
            vec![file],
            LeaseStore::in_memory(cidr),
            SrvPriority::Uniform,
            keep,
        );
        assert!(source.reload());
        source
    });
    println!(
        "manifest source, materialised, 100,000 identities in 10,000 sets of 10: {bytes} bytes, {} B per identity",
        bytes / 100_000
    );
    drop(source);
}
