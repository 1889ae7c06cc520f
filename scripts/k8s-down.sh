#!/usr/bin/env bash
# scripts/k8s-down.sh DIR: stops the control plane scripts/k8s-up.sh DIR started, in reverse
# order (controller manager, API server, etcd): SIGTERM, then SIGKILL after 10 s. Keeps DIR
# (its logs, certificates and etcd data), so scripts/k8s-up.sh DIR starts the same cluster
# again. Safe to re-run; a component that is not running is skipped.
set -uo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
[ -d "$dir/run" ] || exit 0
for name in kube-controller-manager kube-apiserver etcd; do
    pidfile="$dir/run/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "k8s-down: $name (pid $pid) did not stop in 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
done
echo "k8s-down: stopped; logs kept in $dir/logs/" >&2
