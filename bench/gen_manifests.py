#!/usr/bin/env python3
"""Write the synthetic cluster of a gen_zone.py zone directory as Kubernetes manifests that
petdns serves with the same names and records (observed mode: every pod is a Pod object with
the zone's addresses, Ready).

  python3 bench/gen_manifests.py ZONEDIR OUT.yaml

One object per line, as YAML flow mappings (JSON), so 10,000 pods stay a few MB.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8smodel import Model  # noqa: E402


def main():
    zonedir, out = sys.argv[1], sys.argv[2]
    meta = json.load(open(os.path.join(zonedir, "model.json")))
    m = Model(meta["namespaces"], meta["services"], meta["pods"],
              domain=meta["domain"], dual_stack=meta["dual_stack"])
    with open(out, "w") as f:
        def put(obj):
            f.write("---\n" + json.dumps(obj, separators=(",", ":")) + "\n")
        for n in range(m.namespaces):
            ns = f"ns-{n}"
            put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            for s in range(m.services):
                name = f"svc-{s}"
                labels = {"app": name}
                put({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": ns},
                     "spec": {"clusterIP": "None", "selector": labels,
                              "ports": [{"name": m.port_name, "port": m.port, "protocol": m.proto.upper()}]}})
                put({"apiVersion": "apps/v1", "kind": "StatefulSet",
                     "metadata": {"name": name, "namespace": ns},
                     "spec": {"serviceName": name, "replicas": m.pods, "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": labels},
                                           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}})
                for p in range(m.pods):
                    pod = f"{name}-{p}"
                    i = m.pod_index(n, s, p)
                    ips = [m.pod_ipv4(i)] + ([m.pod_ipv6(i)] if m.dual_stack else [])
                    put({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod, "namespace": ns,
                                      "labels": dict(labels, **{"statefulset.kubernetes.io/pod-name": pod})},
                         "spec": {"hostname": pod, "subdomain": name, "containers": [{"name": "app", "image": "x"}]},
                         "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": a} for a in ips],
                                    "conditions": [{"type": "Ready", "status": "True"}]}})
    print(f"wrote {m.total_pods} pods in {m.total_services} services to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
