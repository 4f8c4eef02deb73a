#!/usr/bin/env bash
# The container test: the image built offline, the CPU overlay's endpoint Deployment and its
# ConfigMap run with `podman kube play` (serving the tiny model from a hostPath), images
# generated through it, its container killed, the restart served again. Prints the figures.
# Needs root, podman (runtime = "runc" and explicit default_ulimits in
# /etc/containers/containers.conf on hosts where crun cannot set rlimits), debootstrap, kubectl.
#   kube-play.sh   (after `cargo build`; about 2 minutes)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/target/debug/nicheimage-tui"
base=localhost/debian-minbase:bookworm
if ! podman image exists "$base"; then
  rootfs="$(mktemp -d)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
  rm -rf "$rootfs"
fi
bash "$root/scripts/container/build.sh" --debug --base "$base" --tag localhost/nicheimage-tui:test
echo "image size: $(podman image inspect localhost/nicheimage-tui:test --format '{{.Size}}') bytes"
work="$(mktemp -d)"
trap 'podman kube down "$work/play.yaml" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$bin" tiny-checkpoint --out "$work/models" >/dev/null
chmod -R a+rX "$work"
kubectl kustomize "$root/deploy/k8s/overlays/cpu" > "$work/rendered.yaml"
bash "$root/scripts/k8s/check.sh" "$bin" >/dev/null  # the venv with PyYAML
"$root/.venv-k8s/bin/python" - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{work}/rendered.yaml")) if d]
config = next(d for d in docs if d["kind"] == "ConfigMap")
endpoint = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("endpoint"))
# The overlay's endpoint config, with the tiny model the test ships instead of a download.
config["data"]["endpoint.toml"] += (
    '\n[models.Tiny]\narch = "sd15"\ncheckpoint = "/models/tiny-sd15.safetensors"\n'
    '[models.Tiny.defaults]\nnum_inference_steps = 2\nwidth = 64\nheight = 64\n'
)
config["data"]["endpoint.toml"] = config["data"]["endpoint.toml"].replace(
    'model_name = "RealisticVision"', 'model_name = "Tiny"')
for d in (config, endpoint):
    d["metadata"].pop("namespace", None)
spec = endpoint["spec"]["template"]["spec"]
c = spec["containers"][0]
c["image"] = "localhost/nicheimage-tui:test"
for p in c["ports"]:
    p["hostPort"] = {"generate": 18006, "metrics": 19646}[p["name"]]
c["volumeMounts"].append({"name": "models", "mountPath": "/models", "readOnly": True})
spec["volumes"].append({"name": "models", "hostPath": {"path": f"{work}/models", "type": "Directory"}})
yaml.safe_dump_all([config, endpoint], open(f"{work}/play.yaml", "w"))
PY
started=$(date +%s.%N)
podman kube play "$work/play.yaml" >/dev/null
ready() {
  for _ in $(seq 1 600); do
    "$bin" healthcheck --address 127.0.0.1:19646 --timeout 1 >/dev/null 2>&1 && return 0
    sleep 0.2
    podman ps -a --format '{{.Names}} {{.Status}}' | grep -q endpoint || true
  done
  echo "kube-play.sh: never ready" >&2; exit 1
}
generate() {
  "$root/.venv-k8s/bin/python" - <<'PY'
import json, urllib.request
ok = 0
for seed in range(4):
    body = json.dumps({"prompt": "a lighthouse", "seed": seed, "pipeline_type": "txt2img", "pipeline_params": {}}).encode()
    r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:18006/generate", data=body,
        headers={"content-type": "application/json"}), timeout=60)
    ok += r.status == 200 and bool(json.loads(r.read())["image"])
print(f"{ok}/4 images served")
assert ok == 4
PY
}
ready
echo "start to ready: $(echo "$(date +%s.%N) - $started" | bc) s"
generate
container="$(podman ps --format '{{.Names}}' | grep endpoint | head -1)"
killed=$(date +%s.%N)
# A crash, as the kubelet would see one (podman kill would count as stopped on purpose).
kill -9 "$(podman inspect --format '{{.State.Pid}}' "$container")"
sleep 1
ready
echo "killed to ready again (restartPolicy Always): $(echo "$(date +%s.%N) - $killed" | bc) s"
generate
echo "kube-play.sh: the endpoint ran from the manifests, served, was killed and served again"
