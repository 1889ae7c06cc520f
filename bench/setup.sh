#!/usr/bin/env bash
# Install what the benchmark needs (Debian, as root): Knot DNS (the reference server), dnsperf,
# dig, GNU time, and matplotlib for the chart. Package installs may start knotd on port 53
# where systemd runs; it is stopped again: bench/servers.sh starts its own instances by hand.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf knot bind9-dnsutils time util-linux iproute2 bc
if [ -d /run/systemd/system ]; then systemctl disable --now knot 2>/dev/null || true; fi
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib
