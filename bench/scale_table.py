#!/usr/bin/env python3
"""Renders docs/scale.md's tables from the watch-traffic measurements in bench/out/.

    python3 bench/scale_table.py              # print the tables
    python3 bench/scale_table.py --write-docs # and write them into docs/scale.md

Inputs (written by the ignored tests, see docs/scale.md):
  bench/out/watch-traffic-v1alpha2.json, bench/out/watch-traffic-v1alpha1.json
      tests/kubernetes/traffic.rs, real kube-apiserver
  bench/out/watch-traffic-inprocess-v1alpha2.json, bench/out/watch-traffic-inprocess-v1alpha1.json
      tests/cluster/e2e.rs, the in-process API server
  bench/out/kube-memory.json
      tests/kubernetes/traffic.rs, serve --kube at 100,000 identities

Per change is what one watcher (one DNS server, one kube-proxy) receives; a cluster sends it
to every node. A rolling restart replaces every pod once: its bytes are the measured bytes of
one pod replacement times the set's size.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
DOC = os.path.join(os.path.dirname(HERE), "docs", "scale.md")
NODES = [100, 1000, 5000]


def load(name):
    path = os.path.join(OUT, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def human(b):
    if b is None:
        return "n/a"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= div:
            return f"{b / div:,.1f} {unit}"
    return f"{b:,.0f} B"


def petdns_bytes(row, key):
    if not row or not row.get("served", True):
        return None
    d = row[key]
    return d.get("peersets", 0) + d.get("peerslices", 0)


def rows_by_size(data):
    return {r["replicas"]: r for r in (data or [])}


def tables():
    v2 = rows_by_size(load("watch-traffic-v1alpha2.json"))
    v1 = rows_by_size(load("watch-traffic-v1alpha1.json"))
    i2 = rows_by_size(load("watch-traffic-inprocess-v1alpha2.json"))
    i1 = rows_by_size(load("watch-traffic-inprocess-v1alpha1.json"))
    sizes = sorted(set(v2) | set(v1))
    out = []
    out.append("Bytes of watch events one watcher receives for one pod's readiness flip (the mean of "
               "NotReady and Ready again), and for one pod replaced (deleted, recreated, Ready):\n")
    out.append("| replicas | v1alpha1 (PeerSet) | v1alpha2 (PeerSet + PeerSlice) | Endpoints | "
               "EndpointSlices | in-process: v1alpha1 | in-process: v1alpha2 | v1alpha2, pod replaced | "
               "EndpointSlices, pod replaced |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        a, b = v1.get(n), v2.get(n)
        out.append("| {:,} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            n,
            human(petdns_bytes(a, "readiness_flip_bytes")) if a else "not measured",
            human(petdns_bytes(b, "readiness_flip_bytes")),
            human(b["readiness_flip_bytes"].get("endpoints")) if b else "n/a",
            human(b["readiness_flip_bytes"].get("endpointslices")) if b else "n/a",
            human(petdns_bytes(i1.get(n), "readiness_flip_bytes")) if i1.get(n) else "not measured",
            human(petdns_bytes(i2.get(n), "readiness_flip_bytes")) if i2.get(n) else "not measured",
            human(petdns_bytes(b, "pod_replaced_bytes")),
            human(b["pod_replaced_bytes"].get("endpointslices")) if b else "n/a",
        ))
    out.append("")
    out.append("\"not served\": a v1alpha1 controller does not write a PeerSet whose status is over "
               "1,000,000 bytes, so that set is not served at all.\n")
    out.append("Across a cluster (every DNS server, or every kube-proxy, receives each change):\n")
    out.append("| replicas | nodes | v1alpha1 per flip | v1alpha2 per flip | EndpointSlices per flip | "
               "v1alpha1 rolling restart | v1alpha2 rolling restart | EndpointSlices rolling restart |")
    out.append("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        a, b = v1.get(n), v2.get(n)
        for nodes in NODES:
            def times(x, k=1):
                return None if x is None else x * nodes * k
            fa = petdns_bytes(a, "readiness_flip_bytes") if a else None
            fb = petdns_bytes(b, "readiness_flip_bytes")
            fe = b["readiness_flip_bytes"].get("endpointslices") if b else None
            ra = petdns_bytes(a, "pod_replaced_bytes") if a else None
            rb = petdns_bytes(b, "pod_replaced_bytes")
            re_ = b["pod_replaced_bytes"].get("endpointslices") if b else None
            out.append("| {:,} | {:,} | {} | {} | {} | {} | {} | {} |".format(
                n, nodes,
                human(times(fa)) if a and a.get("served", True) else ("not served" if a else "n/a"),
                human(times(fb)), human(times(fe)),
                human(times(ra, n)) if a and a.get("served", True) else ("not served" if a else "n/a"),
                human(times(rb, n)), human(times(re_, n)),
            ))
    mem = load("kube-memory.json")
    if mem:
        out.append("")
        out.append("Memory of one DNS server replica (`serve --kube`) at {:,} identities in {:,} "
                   "PeerSlices: RSS {} ({} serving 30), {:,} B per identity; ready {:.2f} s after "
                   "start.".format(mem["identities"], mem["slices"], human(mem["rss_bytes"]),
                                   human(mem["rss_bytes_serving_30"]), mem["bytes_per_identity"],
                                   mem["ready_seconds"]))
    return "\n".join(out) + "\n"


def main():
    text = tables()
    print(text)
    if "--write-docs" in sys.argv:
        with open(DOC) as f:
            doc = f.read()
        start, end = "<!-- table:start -->\n", "<!-- table:end -->"
        i, j = doc.index(start), doc.index(end)
        with open(DOC, "w") as f:
            f.write(doc[: i + len(start)] + text + doc[j:])


if __name__ == "__main__":
    main()
