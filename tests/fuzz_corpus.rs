//! Every committed fuzz input, replayed on every `cargo test`: each file of
//! `fuzz/corpus/TARGET/` goes through the same checks the libFuzzer target runs
//! (`fuzz/checks/TARGET.rs`, included here by path), on the stable toolchain and without
//! libFuzzer, cargo-fuzz or nightly. A regression of a bug the fuzzer found (the
//! `regression-*` inputs) or of any behaviour the corpus covers fails here, naming the file.
//! What this does not replay is libFuzzer's own limits (its timeout and memory limit).

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

#[path = "../fuzz/checks/cluster.rs"]
mod cluster;
#[path = "../fuzz/checks/fast.rs"]
mod fast;
#[path = "../fuzz/checks/manifests.rs"]
mod manifests;
#[path = "../fuzz/checks/peerset.rs"]
mod peerset;
#[path = "../fuzz/checks/query.rs"]
mod query;

/// Runs every file of `fuzz/corpus/<target>/` through `run`, and fails, naming each file and
/// its panic, when any input breaks an invariant, or when the corpus is missing or empty.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no inputs", dir.display());
    let started = Instant::now();
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Go on after a panic so that the report names every failing file; a later input
        // can then fail for the earlier one's sake (a poisoned `LazyLock`), never pass.
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            failed.push(format!("{}: {message}", file.display()));
        }
    }
    eprintln!(
        "{target}: {} inputs in {:.2?}",
        files.len(),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs break an invariant:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn fast_corpus_replays_clean() {
    replay("fast", fast::run);
}

#[test]
fn query_corpus_replays_clean() {
    replay("query", query::run);
}

#[test]
fn peerset_corpus_replays_clean() {
    replay("peerset", peerset::run);
}

#[test]
fn manifests_corpus_replays_clean() {
    replay("manifests", manifests::run);
}
