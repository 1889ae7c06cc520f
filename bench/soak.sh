#!/usr/bin/env bash
# Soak: hold 80% of the measured capacity for DURATION seconds while the manifests change every
# RELOAD_EVERY seconds, then report errors (lost queries, SERVFAIL) and RSS growth.
# Not part of the default test run (it takes 10 minutes).
#
#   bash bench/soak.sh                 # 600 s; targets: 0 errors, RSS growth < 5 %
#   DURATION=60 bash bench/soak.sh     # a short look
#
# Exit status 1 when a target is missed. Needs dnsperf and a release build (built here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
DURATION=${DURATION:-600}; RELOAD_EVERY=${RELOAD_EVERY:-5}; PORT=${PORT:-5397}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

(cd "$root" && cargo build -q --release --bin petdns)
data="$here/out/large"
if [ ! -f "$data/cluster.yaml" ]; then
  mkdir -p "$data"
  python3 "$here/gen_zone.py" --preset large "$data" 2>/dev/null
  python3 "$here/gen_manifests.py" "$data" "$data/cluster.yaml"
fi
[ -f "$data/queries-mix.txt" ] || python3 "$here/gen_queries.py" "$data" "$data/queries-mix.txt" --count 300000 2>/dev/null
cp "$data/cluster.yaml" "$work/cluster.yaml"

"$root/target/release/petdns" serve --manifests "$work/cluster.yaml" --listen "127.0.0.1:$PORT" \
  --admin 127.0.0.1:0 --state-dir "$work/state" --log-format json 2> "$work/log" &
pid=$!
for _ in $(seq 1 600); do dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 cluster.local SOA | grep -q hostmaster && break; sleep 0.2; done

echo "== capacity (10 s, unlimited rate)"
cap=$(dnsperf -s 127.0.0.1 -p "$PORT" -d "$data/queries-mix.txt" -l 10 -c 32 -q 500 -e 2>/dev/null | awk '/Queries per second/{print int($4)}')
rate=$((cap * 80 / 100))
echo "capacity ${cap} qps; soaking at ${rate} qps for ${DURATION} s, a reload every ${RELOAD_EVERY} s"

# Reloads: flip one pod's readiness back and forth, written by rename as editors do.
(
  i=0
  while sleep "$RELOAD_EVERY"; do
    if [ $((i % 2)) = 0 ]; then
      sed '0,/"status":"True"/s//"status":"False"/' "$data/cluster.yaml" > "$work/.next"
    else
      cp "$data/cluster.yaml" "$work/.next"
    fi
    mv "$work/.next" "$work/cluster.yaml"; i=$((i + 1))
  done
) &
# RSS every 10 s.
( while sleep 10; do awk '/VmRSS/{print $2}' "/proc/$pid/status"; done > "$work/rss" ) &

dnsperf -s 127.0.0.1 -p "$PORT" -d "$data/queries-mix.txt" -l "$DURATION" -c 32 -q 500 -e -Q "$rate" > "$work/perf" 2>&1 || true
lost=$(awk '/Queries lost:/{print $3}' "$work/perf")
servfail=$(grep -o 'SERVFAIL [0-9]*' "$work/perf" | awk '{print $2}' || true); servfail=${servfail:-0}
reloads=$(grep -c '"snapshot published"' "$work/log" || true)
rejected=$(grep -c 'rejected' "$work/log" || true)
first=$(sed -n 3p "$work/rss"); last=$(tail -1 "$work/rss")   # skip the first 20 s of warm-up
growth=$(python3 -c "print(f'{100 * ($last - $first) / $first:.1f}')")
echo "== result"
grep -E 'Queries (sent|completed|lost)|Response codes|Queries per second' "$work/perf"
echo "snapshots published: $reloads, loads rejected: $rejected"
echo "errors: lost $lost, SERVFAIL $servfail; RSS ${first} kB at 20 s -> ${last} kB at the end: ${growth} %"
ok=$(python3 -c "print(int($lost == 0 and $servfail == 0 and $growth < 5))")
[ "$ok" = 1 ] && echo "PASS (0 errors, RSS growth < 5 %)" || { echo "FAIL"; exit 1; }
