#!/usr/bin/env bash
# Renders deploy/k8s (base and every overlay) with `kubectl kustomize`, validates each resource
# against Kubernetes 1.37's schemas (kubernetes-validate --strict: misspelled fields fail), and
# checks that every probe and port in the manifests is one the node serves with the config the
# pod reads (scripts/k8s/probes.py). Installs its pinned venv from PyPI once; offline and a few
# seconds after that.
#   check.sh [path/to/nicheimage-tui]   (default target/debug/nicheimage-tui)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${1:-$root/target/debug/nicheimage-tui}"
venv="$root/.venv-k8s"
reqs="$root/scripts/k8s/requirements.txt"
command -v kubectl >/dev/null || { echo "k8s/check.sh: kubectl (for kustomize) is needed" >&2; exit 1; }
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$venv/.requirements" "$reqs"; then
  # The pinned validator comes from PyPI once; offline after that.
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$venv/.requirements"
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for dir in "$root"/deploy/k8s/base "$root"/deploy/k8s/overlays/*/; do
  name="$(basename "$dir")"
  kubectl kustomize "$dir" > "$out/$name.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name.yaml"
  "$venv/bin/python" "$root/scripts/k8s/probes.py" --bin "$bin" "$out/$name.yaml"
done
echo "k8s/check.sh: deploy/k8s renders, validates (--strict) and probes what the node serves"
