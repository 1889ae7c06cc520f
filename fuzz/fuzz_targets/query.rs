//! libFuzzer target `query` (docs/reliability.md, "Fuzzing"). The input and the invariants
//! are in `fuzz/checks/query.rs`, which `tests/fuzz_corpus.rs` also runs on every committed
//! input of `fuzz/corpus/query/`.

#![no_main]

#[path = "../checks/query.rs"]
mod check;
#[path = "../checks/cluster.rs"]
mod cluster;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
