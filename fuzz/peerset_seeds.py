#!/usr/bin/env python3
"""Writes the peerset seed corpus (fuzz/corpus/peerset/): PeerSets and PeerSlices as the API
server returns them to `petdns serve --kube`, one JSON Lines file per case (the PeerSet first,
then its slices; see fuzz/checks/peerset.rs).

The objects are those `petdns controller` writes (PeerSet::from_table in
src/identity/peerset.rs: block k holds the ordinals [start + k*S, start + (k+1)*S), a slice is
named <set>.<k>, or <set>.n<-k> below start, `ready` is published/identities), with the
metadata the API server adds (uid, resourceVersion, generation, creationTimestamp, labels,
owner reference). The sets are those of the DNS targets' cluster (fuzz/checks/cluster.rs),
plus cases the server must handle: slices of 10 from a raised start, a condemned pod in a
negative block, a declared ordinal whose slice has not arrived, a PeerSet not reconciled yet,
and slices it must reject.

    python3 fuzz/peerset_seeds.py

Deterministic: re-running rewrites the same files.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "peerset")
API_VERSION = "petdns.io/v1alpha2"
RESOLVED = [{"type": "ServiceResolved", "status": "True", "reason": "ServiceResolved", "message": ""}]


def identity(set_name, o, state, addresses, published, claims=(), node="node-1"):
    i = {
        "ordinal": o,
        "pod": f"{set_name}-{o}",
        "hostname": f"{set_name}-{o}",
        "addresses": addresses,
        "state": state,
        "published": published,
    }
    if node is not None:
        i["node"] = node
    i["revision"] = f"{set_name}-6d8f5c"
    i["claims"] = [f"{c}-{set_name}-{o}" for c in claims]
    return i


def meta(name, namespace, n, labels=None):
    m = {
        "name": name,
        "namespace": namespace,
        "uid": f"00000000-0000-4000-8000-{n:012d}",
        "resourceVersion": str(1000 + n),
        "generation": 1,
        "creationTimestamp": "2026-12-03T09:00:00Z",
    }
    if labels:
        m["labels"] = labels
    return m


def objects(namespace, set_name, service, start, replicas, identities, ports, slice_size=100,
            srv_priority="Uniform", publish_not_ready=False, conditions=RESOLVED, status=True):
    """The PeerSet and its slices, as PeerSet::from_table cuts a table."""
    blocks = {}
    for i in identities:
        blocks.setdefault((i["ordinal"] - start) // slice_size, []).append(i)
    published = sum(1 for i in identities if i["published"])
    owner = {
        "apiVersion": API_VERSION,
        "kind": "PeerSet",
        "name": set_name,
        "uid": "00000000-0000-4000-8000-000000000001",
        "controller": True,
    }
    peerset = {
        "apiVersion": API_VERSION,
        "kind": "PeerSet",
        "metadata": meta(set_name, namespace, 1, {"app.kubernetes.io/managed-by": "petdns"}),
        "spec": {
            "statefulSet": set_name,
            "service": service,
            "ordinals": {"start": start, "replicas": replicas},
            "podManagementPolicy": "OrderedReady",
            "publishNotReadyAddresses": publish_not_ready,
            "srvPriority": srv_priority,
            "ports": ports,
            "sliceSize": slice_size,
        },
    }
    if status:
        peerset["status"] = {
            "observedGeneration": 3,
            "ready": f"{published}/{replicas}",
            "slices": len(blocks),
            "conditions": conditions,
        }
    slices = []
    for n, (k, ids) in enumerate(sorted(blocks.items()), start=2):
        ids.sort(key=lambda i: i["ordinal"])
        name = f"{set_name}.n{-k}" if k < 0 else f"{set_name}.{k}"
        m = meta(name, namespace, n, {"petdns.io/peer-set": set_name,
                                      "app.kubernetes.io/managed-by": "petdns"})
        m["ownerReferences"] = [owner]
        slices.append({
            "apiVersion": API_VERSION,
            "kind": "PeerSlice",
            "metadata": m,
            "spec": {
                "peerSet": set_name,
                "block": k,
                "ready": f"{sum(1 for i in ids if i['published'])}/{len(ids)}",
                "identities": ids,
            },
        })
    return peerset, slices


def port(name, protocol, number):
    p = {"protocol": protocol, "port": number}
    if name is not None:
        p = {"name": name, **p}
    return p


def cases():
    # web/nginx: dual-stack, web-3 not ready.
    web = [identity("web", o, "NotReady" if o == 3 else "Ready",
                    [f"192.0.2.{10 + o}", f"2001:db8::{10 + o:x}"], o != 3, ["www"])
           for o in range(4)]
    yield "web", objects("default", "web", "nginx", 0, 4, web, [port("web", "TCP", 80)])

    # db: 24 pods, ordinal SRV priorities, one pending and one terminating, slices of 10.
    def db_state(o):
        return {20: "Pending", 21: "Terminating"}.get(o, "Ready")
    db = [identity("db", o, db_state(o),
                   [] if o == 20 else [f"198.51.100.{10 + o}", f"2001:db8:1::{10 + o:x}"],
                   db_state(o) == "Ready", ["data", "wal"])
          for o in range(24)]
    yield "db-slices-of-10", objects(
        "prod", "db", "db", 0, 24, db,
        [port("pg", "TCP", 5432), port("metrics", "TCP", 9187), port(None, "TCP", 8008)],
        slice_size=10, srv_priority="Ordinal")

    # kafka: publishNotReadyAddresses, a UDP port.
    kafka = [identity("kafka", o, "NotReady" if o == 2 else "Ready", [f"203.0.113.{10 + o}"], True)
             for o in range(3)]
    yield "kafka-publish-not-ready", objects(
        "prod", "kafka", "brokers", 0, 3, kafka,
        [port("kafka", "TCP", 9092), port("dns", "UDP", 53)], publish_not_ready=True)

    # orphan: its Service does not resolve.
    orphan = [identity("orphan", o, "Ready", [f"192.0.2.{200 + o}"], True) for o in range(2)]
    yield "orphan-service-not-found", objects(
        "staging", "orphan", "missing", 0, 2, orphan, [port("http", "TCP", 80)],
        conditions=[{"type": "ServiceResolved", "status": "False", "reason": "ServiceNotFound",
                     "message": "Service staging/missing not found"}])

    # start raised to 7 while web-5 still terminates: it is in block -1, slice web.n1.
    raised = [identity("web", 5, "Condemned", ["192.0.2.35"], False)]
    raised += [identity("web", o, "Ready", [f"192.0.2.{30 + o}"], True) for o in range(7, 19)]
    yield "start-raised-condemned", objects(
        "default", "web", "nginx", 7, 12, raised, [port("web", "TCP", 80)], slice_size=5)

    # 12 declared, the slice of block 1 (ordinals 5..9) not arrived yet: those are Missing.
    partial = [identity("cache", o, "Ready", [f"10.244.1.{o + 1}"], True) for o in range(12)]
    ps, slices = objects("default", "cache", "cache", 0, 12, partial, [port(None, "TCP", 6379)],
                         slice_size=5)
    yield "slice-not-arrived", (ps, [s for s in slices if s["spec"]["block"] != 1])

    # No status: the controller has not reconciled it yet; nothing is served.
    yield "not-reconciled", objects("default", "web", "nginx", 0, 2, web[:2],
                                    [port("web", "TCP", 80)], status=False)

    # Slices to reject whole: one published without an address, one named for another block.
    bad = [identity("web", o, "Ready", [f"192.0.2.{10 + o}"], True) for o in range(4)]
    ps, slices = objects("default", "web", "nginx", 0, 4, bad, [port("web", "TCP", 80)],
                         slice_size=2)
    slices[0]["spec"]["identities"][1]["addresses"] = []
    slices[1]["spec"]["block"] = 0
    yield "slices-rejected", (ps, slices)


def main():
    os.makedirs(OUT, exist_ok=True)
    for label, (peerset, slices) in cases():
        lines = [json.dumps(o, separators=(",", ":")) for o in [peerset, *slices]]
        with open(os.path.join(OUT, f"{label}.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{label}: {len(slices)} slices")


if __name__ == "__main__":
    main()
