//! PeerSet and PeerSlice objects in, as `petdns serve --kube` receives them from its watches
//! (src/source/kube.rs): each object decoded on its own with serde_json, the PeerSet checked
//! (`PeerSet::check`), each slice of that set checked against it (`PeerSlice::identities`,
//! the last object of a name winning, as a watch replaces it), the accepted identities joined
//! into a table (`PeerSet::to_table`) and the table through an index build. Garbage must be
//! rejected, never crash the server or be half-served.
//!
//! Invariants: every identity of an accepted slice is in the slice's block, named
//! `<statefulSet>-<ordinal>` and, when published, has an address; the table of a checked
//! PeerSet has its identities in ordinal order, unique, covering every declared ordinal, each
//! either an accepted slice's identity as sent or, for a declared ordinal no accepted slice
//! holds, `Missing` and not published; a PeerSet that fails its check gives no table.
//!
//! The input is JSON Lines: the first line is the PeerSet, each further line a PeerSlice
//! (the API server's JSON has no raw newline, so one object per line loses nothing). The
//! seeds (`python3 fuzz/peerset_seeds.py`) are the objects the controller writes for the sets
//! of `cluster.rs` and a few more, with the metadata the API server adds.

use crate::cluster;

use std::collections::{BTreeMap, BTreeSet};

use petdns::identity::{
    Identity, IdentityState, IdentityTable, PeerSet, PeerSlice, block_of, parse_slice_name,
};
use petdns::index;

/// Larger tables are the benchmarks' business (docs/performance.md), as in `manifests`: a few
/// bytes declare thousands of ordinals, and each build would cost milliseconds.
const MAX_INDEXED: usize = 2_000;

/// The checks `PeerSlice::identities` promises, on what it accepted.
fn check_slice(set: &PeerSet, slice: &PeerSlice, ids: &[Identity]) {
    let spec = &set.spec;
    let name = slice.metadata.name.as_deref().unwrap_or_default();
    let (_, block) = parse_slice_name(name)
        .unwrap_or_else(|| panic!("slice {name:?} accepted with a name that does not parse"));
    assert_eq!(
        block, slice.spec.block,
        "slice {name} accepted for another block"
    );
    let mut seen = BTreeSet::new();
    for i in ids {
        assert_eq!(
            block_of(i.ordinal, spec.ordinals.start, spec.slice_size),
            block,
            "slice {name}: identity {} accepted outside block {block}",
            i.ordinal
        );
        assert_eq!(
            i.pod,
            format!("{}-{}", spec.stateful_set, i.ordinal),
            "slice {name}: identity {} accepted under another name",
            i.ordinal
        );
        assert!(
            !(i.published && i.addresses.is_empty()),
            "slice {name}: identity {} accepted, published without an address",
            i.pod
        );
        assert!(
            seen.insert(i.ordinal),
            "slice {name}: ordinal {} accepted twice",
            i.ordinal
        );
    }
}

/// What `to_table` must make of a checked PeerSet and the accepted slices.
fn check_table(set: &PeerSet, accepted: &BTreeMap<String, &[Identity]>, table: &IdentityTable) {
    let spec = &set.spec;
    for pair in table.identities.windows(2) {
        assert!(
            pair[0].ordinal < pair[1].ordinal,
            "identities out of order or twice: {} then {}",
            pair[0].ordinal,
            pair[1].ordinal
        );
    }
    // Two names can hold one block (`web.1`, `web.01`): an ordinal may come in several.
    let mut sent: BTreeMap<i32, Vec<&Identity>> = BTreeMap::new();
    for i in accepted.values().flat_map(|ids| ids.iter()) {
        sent.entry(i.ordinal).or_default().push(i);
    }
    let held: BTreeSet<i32> = table.identities.iter().map(|i| i.ordinal).collect();
    for o in spec.ordinals.iter() {
        assert!(
            held.contains(&o),
            "declared ordinal {o} is not in the table"
        );
    }
    for i in &table.identities {
        match sent.get(&i.ordinal) {
            Some(s) => assert!(s.contains(&i), "identity {} changed on its way", i.ordinal),
            None => {
                assert!(
                    spec.ordinals.contains(i.ordinal),
                    "identity {} in the table comes from no slice and is not declared",
                    i.ordinal
                );
                assert!(
                    i.state == IdentityState::Missing && !i.published,
                    "declared ordinal {} without a slice is {:?}, published {}",
                    i.ordinal,
                    i.state,
                    i.published
                );
                assert_eq!(i.pod, format!("{}-{}", spec.stateful_set, i.ordinal));
            }
        }
        assert!(
            !(i.published && i.addresses.is_empty()),
            "identity {} published without an address",
            i.pod
        );
    }
    assert_eq!(table.ordinals, spec.ordinals);
    assert_eq!(Some(&table.namespace), set.metadata.namespace.as_ref());
}

/// One input, as the fuzz target and the replay in `tests/fuzz_corpus.rs` give it; panics on
/// a broken invariant.
pub fn run(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(Ok(set)) = lines.next().map(serde_json::from_slice::<PeerSet>) else {
        return;
    };
    // The slices of this set, by name: a later object of the same name replaces an earlier
    // one, and slices of other sets or namespaces are not this set's (kube.rs keys them so).
    let mut slices: BTreeMap<String, PeerSlice> = BTreeMap::new();
    for line in lines {
        let Ok(slice) = serde_json::from_slice::<PeerSlice>(line) else {
            continue;
        };
        let (Some(name), Some(ns)) = (&slice.metadata.name, &slice.metadata.namespace) else {
            continue;
        };
        let ours = parse_slice_name(name).map(|(s, _)| s) == set.metadata.name.as_deref()
            && Some(ns) == set.metadata.namespace.as_ref();
        if ours {
            slices.insert(name.clone(), slice);
        }
    }
    if let Err(e) = set.check() {
        // Rendering the error is part of rejecting the object (a log line, a metric).
        let _ = e.to_string();
        assert!(
            set.to_table(std::iter::empty()).is_err(),
            "a PeerSet that fails its check gives a table"
        );
        return;
    }
    let mut accepted: BTreeMap<String, &[Identity]> = BTreeMap::new();
    for (name, slice) in &slices {
        match slice.identities(&set.spec) {
            Ok(ids) => {
                check_slice(&set, slice, ids);
                accepted.insert(name.clone(), ids);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let table = set
        .to_table(accepted.values().copied())
        .unwrap_or_else(|e| panic!("a checked PeerSet gives no table: {e}"));
    check_table(&set, &accepted, &table);
    if table.identities.len() > MAX_INDEXED {
        return;
    }
    let namespaces: BTreeSet<String> = [table.namespace.clone()].into();
    let snap = index::build(&[table], &namespaces, &cluster::config(), 1, 1);
    std::hint::black_box(snap);
}
