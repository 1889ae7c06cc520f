#!/usr/bin/env bash
# The peers example end to end on one machine, as README.md beside this file does by hand:
# petdns on a free port serving peers.yaml with addresses from 127.0.10.0/24, one
# `node peers.js` per leased address, data posted to two of them, a GET on the third that must
# list all three peers with their data. Cleans up after itself; exits non-zero on failure.
#
#   bash examples/peers/run.sh            # builds petdns with cargo unless PETDNS is set
#   PETDNS=/path/to/petdns bash examples/peers/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
SERVICE_FQDN=peers.default.svc.cluster.local
POD_CIDR=127.0.10.0/24

fail() { echo "run.sh: FAIL: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node (Node.js 18 or newer) is not on PATH"
command -v curl >/dev/null || fail "curl is not on PATH"

if [ -z "${PETDNS:-}" ]; then
  (cd "$repo" && cargo build --quiet --bin petdns) || fail "cargo build of petdns failed"
  target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  PETDNS="$target_dir/debug/petdns"
fi
[ -x "$PETDNS" ] || fail "no petdns binary at $PETDNS"

work="$(mktemp -d "${TMPDIR:-/tmp}/petdns-peers.XXXXXX")"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] && { echo "--- $log"; tail -n 20 "$log"; } >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port free on every address for the three instances, written into a copy of the manifest
# as the container port, so the SRV answer carries it (8080 may be taken on this machine).
PORT="${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"0.0.0.0",()=>{console.log(s.address().port);s.close()})')}"
sed "s/containerPort: 8080/containerPort: $PORT/" "$here/peers.yaml" >"$work/peers.yaml"
grep -q "containerPort: $PORT" "$work/peers.yaml" || fail "could not set the container port in the manifest copy"

echo "== petdns serve --manifests peers.yaml --pod-cidr $POD_CIDR (container port $PORT)"
"$PETDNS" serve --manifests "$work/peers.yaml" --pod-cidr "$POD_CIDR" --state-dir "$work/state" \
  --listen 127.0.0.1:0 --admin 127.0.0.1:0 --log-format json 2>"$work/petdns.log" &
pids+=($!)

dns=""
for _ in $(seq 100); do
  dns="$(sed -n 's/.*"message":"listening".*"dns":"\([^"]*\)".*/\1/p' "$work/petdns.log" | head -n 1)"
  [ -n "$dns" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "petdns exited"
  sleep 0.1
done
[ -n "$dns" ] || fail "petdns printed no listening line"
admin="$(sed -n 's/.*"message":"listening".*"admin":"\([^"]*\)".*/\1/p' "$work/petdns.log" | head -n 1)"
for _ in $(seq 100); do
  curl -sf "http://$admin/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$admin/readyz" >/dev/null || fail "petdns never became ready (http://$admin/readyz)"
echo "petdns answers on $dns"

# The leased addresses, read from petdns (check reads the lease file serve wrote).
"$PETDNS" check --manifests "$work/peers.yaml" --pod-cidr "$POD_CIDR" --state-dir "$work/state" | tee "$work/check.txt"
addr() { awk -v pod="$1" '$4 == pod { print $6 }' "$work/check.txt"; }

for i in 0 1 2; do
  ip="$(addr "peers-$i")"
  [ -n "$ip" ] || fail "no address for peers-$i in petdns check"
  POD_NAME="peers-$i" POD_IP="$ip" PORT="$PORT" SERVICE_FQDN="$SERVICE_FQDN" DNS_SERVER="$dns" \
    DATA_FILE="$work/peers-$i.data" node "$here/peers.js" >"$work/peers-$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do
  ip="$(addr "peers-$i")"
  for _ in $(seq 100); do
    curl -sf "http://$ip:$PORT/data" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://$ip:$PORT/data" >/dev/null || fail "peers-$i does not answer on $ip:$PORT"
done

echo "== dig SRV $SERVICE_FQDN"
if command -v dig >/dev/null; then
  dig @"${dns%:*}" -p "${dns##*:}" +short SRV "$SERVICE_FQDN"
fi

echo "== POST data to peers-0 and peers-1"
curl -sS -d "The sun is shining" "http://$(addr peers-0):$PORT/"
curl -sS -d "The weather is sweet" "http://$(addr peers-1):$PORT/"

echo "== GET / on peers-2"
out="$(curl -sS "http://$(addr peers-2):$PORT/")" || fail "GET / on peers-2 failed"
echo "$out"

want="You've hit peers-2
Data stored in the cluster:
- peers-0.peers.default.svc.cluster.local: The sun is shining
- peers-1.peers.default.svc.cluster.local: The weather is sweet
- peers-2.peers.default.svc.cluster.local: no data posted yet"
[ "$out" = "$want" ] || fail "GET / on peers-2 answered something else; wanted:
$want"
echo "== OK: peers-2 found all three peers through SRV and gathered their data"
