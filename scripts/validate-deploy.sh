#!/usr/bin/env bash
# Validates deploy/ (or the directory given) against the Kubernetes API schemas, without a
# cluster or kubectl.
#
# 1. Renders the kustomization the way `kubectl apply -k deploy/` would for the fields
#    deploy/kustomization.yaml uses (resources, namespace, labels, images); any other field
#    makes this script fail rather than validate something kubectl would not apply.
# 2. Validates every rendered object with `kubernetes-validate --strict` (unknown fields are
#    errors) against the oldest supported Kubernetes (1.33) and the newest version the
#    installed kubernetes-validate ships. PeerSets (petdns.io, our CRD) have no schema there
#    and are skipped with a note; any other object without a schema is a failure.
set -euo pipefail
if [ $# -gt 0 ]; then dir=$(realpath "$1"); fi
cd "$(dirname "$0")/.."
dir=${dir:-deploy}
OLDEST=1.33.0

# Run as a module: a `pip install --user` puts the script where PATH may not look.
if ! python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "== installing kubernetes-validate (pip)"
    python3 -m pip install --quiet kubernetes-validate
fi

schemas=$(python3 -c 'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')
NEWEST=$(ls "$schemas" | sed -n 's/^v\([0-9.]*\)-local-strict$/\1/p' | sort -V | tail -1)
if [ -z "$NEWEST" ]; then
    echo "no strict schemas found under $schemas" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== rendering $dir/kustomization.yaml"
python3 - "$dir" "$work" <<'PY'
import os, sys, yaml

base, out = sys.argv[1], sys.argv[2]
with open(os.path.join(base, "kustomization.yaml")) as f:
    k = yaml.safe_load(f)

known = {"apiVersion", "kind", "namespace", "labels", "images", "resources"}
unknown = set(k) - known
if unknown:
    sys.exit(f"kustomization.yaml uses {sorted(unknown)}: teach scripts/validate-deploy.sh to render them")

# Kinds that are not namespaced, among those deploy/ may hold.
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
# Our own CRD's group: its objects have no schema in kubernetes-validate.
CRD_GROUPS = {"petdns.io"}

def set_labels(obj, pairs):
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {}).update(pairs)

def set_images(obj, images):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        name, _, tag = c["image"].partition(":")
        for i in images:
            if i["name"] == name:
                c["image"] = i.get("newName", name) + ":" + i.get("newTag", tag or "latest")

checked, skipped = [], []
for res in k["resources"]:
    path = os.path.join(base, res)
    if not os.path.isfile(path):
        sys.exit(f"{path}: listed in kustomization.yaml but missing")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        kind = d["kind"]
        group = d["apiVersion"].rpartition("/")[0]
        if kind not in CLUSTER_SCOPED and "namespace" in k:
            d["metadata"]["namespace"] = k["namespace"]
        for l in k.get("labels", []):
            set_labels(d, l["pairs"])
        set_images(d, k.get("images", []))
        label = f"{res}: {kind}/{d['metadata']['name']}"
        if group in CRD_GROUPS:
            skipped.append(label)
            continue
        name = f"{len(checked):02d}-{kind.lower()}-{d['metadata']['name']}.yaml"
        with open(os.path.join(out, name), "w") as f:
            yaml.safe_dump(d, f, sort_keys=False)
        checked.append(label)

for s in skipped:
    print(f"note: skipped {s} (a custom resource: kubernetes-validate has no schema for it)")
print(f"{len(checked)} objects rendered from {len(k['resources'])} files")
PY

status=0
for version in "$OLDEST" "$NEWEST"; do
    echo "== kubernetes-validate --strict, Kubernetes $version"
    if ! out=$(python3 -m kubernetes_validate --strict -k "$version" "$work"/*.yaml 2>&1); then
        status=1
    fi
    echo "$out" | sed "s|$work/||"
    # A built-in kind without a schema is only a warning to kubernetes-validate; here it fails.
    if echo "$out" | grep -qv '^INFO '; then
        status=1
    fi
done
if [ "$status" != 0 ]; then
    echo "$dir is NOT valid" >&2
    exit 1
fi
echo "$dir is valid for Kubernetes $OLDEST and $NEWEST"
