#!/usr/bin/env bash
# Runs each cargo-fuzz target from the committed corpus, minimises what it found back into
# that corpus, and prints executions, rate, crashes and corpus size per target.
#
#   scripts/fuzz.sh [SECONDS]                 # 300 s per target (default), one after the other
#   TARGETS="fast peerset" scripts/fuzz.sh 60 # only some targets
#   RUNS=10000000 TARGETS=fast scripts/fuzz.sh 3600   # stop at 10M executions or 1 h
#   WORKERS=2 TARGETS=manifests scripts/fuzz.sh 3600  # two fuzzing processes (one per core)
#   scripts/fuzz.sh 0                         # smoke: each committed input once, nothing kept
#
# Targets: fast, peerset, query, manifests (docs/reliability.md, "Fuzzing").
# The corpus is fuzz/corpus/TARGET, committed: a run starts from it and, unless SECONDS is 0,
# what the run found is merged back into it with libFuzzer's -set_cover_merge=1 (about the
# fewest inputs that keep the coverage), the named seeds and regression-* inputs always kept,
# so the next run starts where this one ended; commit fuzz/corpus/ afterwards. New inputs
# collect in fuzz/target/corpus/TARGET/N, one directory per worker, during the run (not
# committed; emptied after a merge). With WORKERS=N, N independent processes fuzz the same
# target from the same corpus, RUNS is split between them, executions are summed, and worker
# 1's output is shown (the others' are in fuzz/target/TARGET.log.N).
# Crashes go to fuzz/artifacts/TARGET/. Exit status 1 when any target crashed.
#
# SANITIZER=none (default) builds without AddressSanitizer: the code the targets reach is
# #![forbid(unsafe_code)], and the sanitizer slows every execution (docs/reliability.md has
# the rates). SANITIZER=address for the sanitizer, built in fuzz/target-address so that
# switching rebuilds neither.
# Needs a nightly toolchain (`rustup toolchain list`); installs cargo-fuzz if it is missing.
# The first build compiles every dependency with coverage instrumentation: 20 to 30 minutes
# on 2 shared cores, then about 6 minutes whenever src/ changes.
set -euo pipefail

seconds=${1:-300}
targets=${TARGETS:-fast peerset query manifests}
runs=${RUNS:--1}
workers=${WORKERS:-1}
case $workers in
    '' | *[!0-9]* | 0)
        echo "fuzz.sh: WORKERS must be a number of processes, 1 or more (got '$workers')" >&2
        exit 2
        ;;
esac
sanitizer=${SANITIZER:-none}
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

build=(-s "$sanitizer")
if [ "$sanitizer" != none ]; then
    build+=(--target-dir "fuzz/target-$sanitizer")
fi
started=$SECONDS
cargo +nightly fuzz build "${build[@]}" >&2
echo "== built in $((SECONDS - started)) s" >&2

# Named inputs (seeds, regression-*) are kept whatever their coverage; libFuzzer names what it
# finds by the SHA-1 of its content.
named() { find "$1" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}'; }

per_worker=$runs
if [ "$runs" -gt 0 ]; then per_worker=$(( (runs + workers - 1) / workers )); fi
# One fuzzing process: worker N of target $target, new inputs in $work/N, output in $log.N.
worker() {
    # New inputs go to the first corpus directory; the committed one is only read here.
    cargo +nightly fuzz run "${build[@]}" "$target" "$work/$1" "$corpus" -- \
        -max_total_time="$seconds" -runs="$per_worker" -timeout=10 \
        -print_final_stats=1 >"$log.$1" 2>&1
}

status=0
summary=()
for target in $targets; do
    corpus=fuzz/corpus/$target
    work=fuzz/target/corpus/$target
    artifacts=fuzz/artifacts/$target
    log=fuzz/target/$target.log
    mkdir -p "$corpus" "$work" "$artifacts"
    before=$(find "$artifacts" -type f | sort)
    started=$SECONDS
    set +e
    if [ "$seconds" -eq 0 ]; then
        echo "== $target: the committed corpus once" >&2
        cargo +nightly fuzz run "${build[@]}" "$target" "$corpus" -- \
            -runs=0 -timeout=10 -print_final_stats=1 2>&1 | tee "$log" >&2
        rc=${PIPESTATUS[0]}
    else
        echo "== $target: ${seconds} s, $workers worker(s)" >&2
        rm -f "$log".*
        for w in $(seq 1 "$workers"); do
            mkdir -p "$work/$w"
            : >"$log.$w"
        done
        pids=()
        for w in $(seq 2 "$workers"); do
            worker "$w" &
            pids+=($!)
        done
        worker 1 &
        pids+=($!)
        tail -n +1 --pid="$!" -f "$log.1" >&2
        rc=0
        for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
        cat "$log".* >"$log"
    fi
    set -e
    took=$((SECONDS - started))
    # Each worker prints its own total last.
    executed=$(grep -ho 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' |
        awk '{ n += $1 } END { if (NR) print n }')
    new=$(comm -13 <(printf '%s\n' "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')
    crashes=$(printf '%s' "$new" | grep -c . || true)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # failed without leaving an artifact (a build or libFuzzer error)
    fi
    if [ "$crashes" -ne 0 ]; then
        status=1
        printf '%s\n' "$new" | sed '/^$/d; s/^/  new artifact: /' >&2
    elif [ "$seconds" -ne 0 ]; then
        # Minimise the committed corpus and the run's finds into a fresh directory that
        # starts with the named inputs, then make it the committed corpus.
        merged=fuzz/target/merged/$target
        rm -rf "$merged"
        mkdir -p "$merged"
        named "$corpus" | xargs -r cp -t "$merged"
        echo "== $target: minimising into $corpus" >&2
        cargo +nightly fuzz run "${build[@]}" "$target" "$merged" "$corpus" "$work" -- \
            -set_cover_merge=1 -timeout=10 >"fuzz/target/$target.merge.log" 2>&1 || {
            echo "fuzz.sh: merging $target failed, see fuzz/target/$target.merge.log" >&2
            exit 1
        }
        rm -rf "$corpus" "$work"
        mv "$merged" "$corpus"
        mkdir -p "$work"
    fi
    size=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    rate=$(( ${executed:-0} / (took > 0 ? took : 1) ))
    summary+=("$target: ${executed:-?} executions in $took s (${rate}/s), $crashes crashes, corpus $size inputs ($((bytes / 1024)) KiB)")
done

printf '%s\n' "${summary[@]}"
exit $status
