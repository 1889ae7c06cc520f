#!/usr/bin/env bash
# Builds CoreDNS, the DNS server petdns is compared with, from its Go module (tests/coredns/,
# github.com/coredns/coredns at one release, its default plugin set), unless the binary for
# exactly that go.mod and go.sum is already built:
#
#   target/coredns/<version>-<hash of tests/coredns/go.mod and go.sum>/bin/coredns
#
# Prints that bin directory on its last line. Like the control plane (scripts/k8s-build.sh),
# CoreDNS is a test peer built with Go; nothing of it goes into petdns.
set -euo pipefail
cd "$(dirname "$0")/.."
module=tests/coredns

if ! command -v go >/dev/null 2>&1; then
    echo "coredns-build: no Go toolchain on PATH (CoreDNS is built from its Go module)" >&2
    exit 3
fi
version=$(sed -n 's/^\s*github.com\/coredns\/coredns \(v[0-9.]*\).*/\1/p' "$module/go.mod" | head -1)
if [ -z "$version" ]; then
    echo "coredns-build: no github.com/coredns/coredns requirement in $module/go.mod" >&2
    exit 1
fi
key=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-16)
bin="target/coredns/$version-$key/bin"
if [ -x "$bin/coredns" ]; then
    echo "coredns-build: CoreDNS $version already built in $bin" >&2
    echo "$(pwd)/$bin"
    exit 0
fi
echo "coredns-build: building CoreDNS $version into $bin" >&2
started=$SECONDS
mkdir -p "$bin"
# As its Makefile builds releases: static, stripped; the commit stamp is left out.
(cd "$module" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" \
    -o "../../$bin/coredns.partial" github.com/coredns/coredns)
mv "$bin/coredns.partial" "$bin/coredns"
echo "coredns-build: built in $((SECONDS - started)) s" >&2
echo "$(pwd)/$bin"
