#!/usr/bin/env bash
# Builds the real Kubernetes control plane the cluster tests run against, from the Go module in
# tests/k8s/ (k8s.io/kubernetes at one release, etcd at the release it requires), unless the
# binaries for exactly that go.mod and go.sum are already built:
#
#   target/k8s/<hash of tests/k8s/go.mod and go.sum>/bin/{etcd,kube-apiserver,kube-controller-manager,kubectl}
#
# Prints that bin directory on its last line. A cold build takes about 8 minutes on 2 cores
# (module downloads included); afterwards it costs nothing. Go is a test peer here: petdns is
# Rust, and nothing of this goes into it.
set -euo pipefail
cd "$(dirname "$0")/.."
module=tests/k8s

if ! command -v go >/dev/null 2>&1; then
    echo "k8s-build: no Go toolchain on PATH (the control plane is built from Go modules)" >&2
    exit 3
fi

# The release, read from go.mod so there is one place to change it.
version=$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$module/go.mod" | head -1)
if [ -z "$version" ]; then
    echo "k8s-build: no k8s.io/kubernetes requirement in $module/go.mod" >&2
    exit 1
fi
key=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-16)
out="target/k8s/$version-$key"
bin="$out/bin"
tools=(etcd kube-apiserver kube-controller-manager kubectl)

have_all() {
    for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done
}

if have_all; then
    echo "k8s-build: Kubernetes $version control plane already built in $bin" >&2
    echo "$(pwd)/$bin"
    exit 0
fi

echo "k8s-build: building Kubernetes $version (kube-apiserver, kube-controller-manager, kubectl) and etcd into $bin" >&2
started=$SECONDS
mkdir -p "$out"
tmp="$out/bin.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
# What a release build stamps (hack/lib/version.sh): without it the binaries say v0.0.0.
pkg=k8s.io/component-base/version
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
(
    cd "$module"
    # Static like the release binaries (KUBE_STATIC_BINARIES); no profile-guided optimisation,
    # which only lengthens the build of a test peer.
    CGO_ENABLED=0 go build -buildvcs=false -trimpath -pgo=off -ldflags "$ldflags" -o "../../$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kubectl
    CGO_ENABLED=0 go build -buildvcs=false -trimpath -pgo=off -ldflags "-s -w" -o "../../$tmp/etcd" \
        go.etcd.io/etcd/server/v3
)
rm -rf "$bin"
mv "$tmp" "$bin"
echo "k8s-build: built in $((SECONDS - started)) s" >&2
echo "$(pwd)/$bin"
