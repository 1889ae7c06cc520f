//! libFuzzer target `manifests` (docs/reliability.md, "Fuzzing"). The input and the invariants
//! are in `fuzz/checks/manifests.rs`, which `tests/fuzz_corpus.rs` also runs on every committed
//! input of `fuzz/corpus/manifests/`.

#![no_main]

#[path = "../checks/manifests.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
