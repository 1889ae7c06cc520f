#!/usr/bin/env bash
# scripts/k8s-up.sh DIR: a real Kubernetes control plane on loopback, for the cluster tests and
# for trying petdns by hand: etcd, kube-apiserver and kube-controller-manager, built from their
# Go modules by scripts/k8s-build.sh (only the first time on a machine).
#
#   DIR/kubeconfig      cluster-admin (client certificate, group system:masters)
#   DIR/bin/kubectl     the kubectl of the same release
#   DIR/env             KUBECONFIG, the API server's URL, the ports, the binaries' directory
#   DIR/logs/*.log      one log per component
#
# No kubelet, no scheduler, no kube-proxy, no container runtime: whoever uses the cluster plays
# those parts (binds pods to Nodes, writes their status, renews the Nodes' Leases).
#
# Safe to re-run: a component that is running and healthy is kept, one that is not is
# (re)started on the same ports with the same certificates and data, so stopping only the API
# server and running this again is an API server restart with etcd kept. On failure everything
# in DIR is stopped again and the failing component's log is printed.
# scripts/k8s-down.sh DIR stops it all.
#
# Environment: K8S_NODE_GRACE (seconds without a Lease renewal before the node lifecycle
# controller marks a Node Unknown and its pods not Ready; default 6, Kubernetes' own is 50);
# K8S_KCM_QPS (the controller manager's API request rate, default 100, Kubernetes' own 20, so
# that a StatefulSet of thousands of pods comes up in minutes).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
mkdir -p "$dir"/{pki,logs,run,bin}

bin=$(bash "$root/scripts/k8s-build.sh" | tail -1)
for t in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$bin/$t" ] || { echo "k8s-up: $bin/$t missing after the build" >&2; exit 1; }
done
if ! command -v openssl >/dev/null 2>&1; then
    echo "k8s-up: openssl is needed for the certificates (apt-get install openssl)" >&2
    exit 1
fi

started_now=()
fail() {
    echo "k8s-up: $*" >&2
    for c in "${started_now[@]}"; do
        if [ -f "$dir/logs/$c.log" ]; then
            echo "---- last lines of $dir/logs/$c.log" >&2
            tail -n 25 "$dir/logs/$c.log" >&2
        fi
    done
    bash "$root/scripts/k8s-down.sh" "$dir" >&2 || true
    exit 1
}
trap 'fail "failed at line $LINENO"' ERR

# ---- ports: chosen once per DIR, so a restart keeps the kubeconfig valid.
if [ ! -f "$dir/ports" ]; then
    python3 - "$dir/ports" <<'EOF'
import socket, sys
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
ports = [s.getsockname()[1] for s in socks]
with open(sys.argv[1], "w") as f:
    f.write("ETCD_PORT=%d\nETCD_PEER_PORT=%d\nAPI_PORT=%d\n" % tuple(ports))
EOF
fi
# shellcheck source=/dev/null
. "$dir/ports"

# kube-apiserver 1.37 refuses a loopback --advertise-address; it only names this machine in
# the kubernetes Service's endpoints, which nothing here reconciles (--endpoint-reconciler-type
# none), and no traffic is ever sent to it. The machine's own address if it has one, else a
# documentation address (RFC 5737).
advertise=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
advertise=${advertise:-192.0.2.1}

# ---- certificates and keys (made once per DIR).
pki="$dir/pki"
cert() { # name subject [san]
    local name=$1 subject=$2 san=${3:-}
    [ -f "$pki/$name.crt" ] && return 0
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subject" \
        -out "$pki/$name.csr" 2>/dev/null
    local ext="$pki/$name.ext"
    if [ -n "$san" ]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$ext"
    else
        printf 'extendedKeyUsage=clientAuth\n' >"$ext"
    fi
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$ext"
}
if [ ! -f "$pki/ca.crt" ]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -days 30 \
        -subj "/CN=petdns-test-ca" -out "$pki/ca.crt" 2>/dev/null
fi
cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost,IP:$advertise"
cert admin "/O=system:masters/CN=kubernetes-admin"
cert controller-manager "/CN=system:kube-controller-manager"
if [ ! -f "$pki/sa.key" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi

server="https://127.0.0.1:$API_PORT"
kubeconfig() { # file user
    local file=$1 user=$2
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: petdns-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: petdns-test
  context: {cluster: petdns-test, user: $user}
current-context: petdns-test
EOF
}
kubeconfig "$dir/kubeconfig" admin
kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
ln -sf "$bin/kubectl" "$dir/bin/kubectl"

# ---- processes
running() { # name
    local pid
    pid=$(cat "$dir/run/$1.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null
}
start() { # name binary args...
    local name=$1
    shift
    # setsid: the component outlives this script and the shell that ran it, and k8s-down.sh
    # stops it by its pid.
    setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/run/$name.pid"
    started_now+=("$name")
}
wait_for() { # name seconds check...
    local name=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        running "$name" || fail "$name exited"
        [ $SECONDS -lt $deadline ] || fail "$name not healthy after $seconds s"
        sleep 0.2
    done
}
api_ok() { # path
    curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server$1"
}

if ! running etcd; then
    start etcd "$bin/etcd" \
        --name default \
        --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync \
        --log-level warn
fi
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

if ! running kube-apiserver; then
    start kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 \
        --secure-port "$API_PORT" \
        --advertise-address "$advertise" \
        --endpoint-reconciler-type none \
        --tls-cert-file "$pki/apiserver.crt" \
        --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$pki/sa.pub" \
        --service-account-signing-key-file "$pki/sa.key" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction,PodSecurity \
        --service-cluster-ip-range 203.0.113.0/24,2001:db8:5::/112 \
        --allow-privileged=true \
        --cert-dir "$pki"
fi
wait_for kube-apiserver 90 api_ok /readyz

if ! running kube-controller-manager; then
    grace=${K8S_NODE_GRACE:-6}
    start kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig "$dir/controller-manager.kubeconfig" \
        --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$pki/sa.key" \
        --root-ca-file "$pki/ca.crt" \
        --controllers serviceaccount-token-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller,statefulset-controller,node-lifecycle-controller,endpointslice-controller,endpoints-controller \
        --kube-api-qps "${K8S_KCM_QPS:-100}" --kube-api-burst "$((2 * ${K8S_KCM_QPS:-100}))" \
        --node-monitor-period 1s \
        --node-monitor-grace-period "${grace}s" \
        --node-startup-grace-period "${grace}s" \
        --secure-port 0
fi
# Up once the default ServiceAccount of a namespace exists (the serviceaccount controller
# runs, and with it the rest).
wait_for kube-controller-manager 60 \
    "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default -n default

cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
K8S_SERVER=$server
K8S_BIN=$bin
ETCD_PORT=$ETCD_PORT
API_PORT=$API_PORT
EOF
trap - ERR
echo "k8s-up: Kubernetes $("$bin/kubectl" --kubeconfig "$dir/kubeconfig" version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') at $server"
echo "k8s-up: export KUBECONFIG=$dir/kubeconfig; kubectl is $dir/bin/kubectl"
echo "k8s-up: logs in $dir/logs/ (etcd.log, kube-apiserver.log, kube-controller-manager.log); stop with scripts/k8s-down.sh $dir"
