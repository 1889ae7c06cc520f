#!/usr/bin/env bash
# Runs each cargo-fuzz target for a set time and prints its executions and crashes.
#
#   scripts/fuzz.sh [SECONDS]          # default 300 s per target, one target after the other
#   TARGETS=query scripts/fuzz.sh 60   # only some targets
#
# Needs a nightly toolchain (`rustup toolchain list`); installs cargo-fuzz if it is missing.
# Seeds are read from fuzz/corpus/TARGET (committed); what libFuzzer discovers goes to
# fuzz/target/corpus/TARGET (not committed, kept between runs); crashes go to
# fuzz/artifacts/TARGET/. Exit status 1 when any target crashed.
# The first build compiles every dependency with the sanitizer: allow about 20 minutes.
set -euo pipefail

seconds=${1:-300}
targets=${TARGETS:-query manifests}
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build >&2

status=0
summary=()
for target in $targets; do
    work=fuzz/target/corpus/$target
    artifacts=fuzz/artifacts/$target
    log=fuzz/target/$target.log
    mkdir -p "$work" "$artifacts"
    before=$(find "$artifacts" -type f | sort)
    echo "== $target: ${seconds} s" >&2
    # New inputs go to the first corpus directory; the seeds are only read.
    started=$SECONDS
    set +e
    cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 | tee "$log" >&2
    rc=${PIPESTATUS[0]}
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1 | grep -o 'in [0-9]*' | grep -o '[0-9]*' || true)
    new=$(comm -13 <(printf '%s\n' "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')
    crashes=$(printf '%s' "$new" | grep -c . || true)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # failed without leaving an artifact (a build or libFuzzer error)
    fi
    corpus=$(find "$work" -type f | wc -l)
    summary+=("$target: ${runs:-?} executions in ${took:-$((SECONDS - started))} s, $crashes crashes, corpus $corpus inputs")
    if [ "$crashes" -ne 0 ]; then
        status=1
        printf '%s\n' "$new" | sed '/^$/d; s/^/  new artifact: /' >&2
    fi
done

printf '%s\n' "${summary[@]}"
exit $status
