#!/usr/bin/env bash
# The container test: the image built offline, the CPU overlay's endpoint and miner Deployments
# and their ConfigMap run with `podman kube play` (the endpoint serving the tiny model from a
# hostPath; the miner on its own embedded chain, on the host's network, admitting unregistered
# callers), images generated through the endpoint and through the miner's axon (a bittensor
# 11.3 client signing btauth/1), the endpoint's process killed, the restart served again.
# Prints the figures.
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
# The miner's hotkey (a Secret in a cluster; a hostPath here), readable by the image's user.
hotkey="$("$bin" wallet new-hotkey --wallet.path "$work/wallet" --wallet.name miner --wallet.hotkey default | awk '{print $2}')"
chown -R 10001:10001 "$work/wallet"
chmod -R a+rX "$work/models" "$work"
python_today="$(bash "$root/scripts/interop/setup.sh" today)/bin/python"
kubectl kustomize "$root/deploy/k8s/overlays/cpu" > "$work/rendered.yaml"
bash "$root/scripts/k8s/check.sh" "$bin" >/dev/null  # the venv with PyYAML
"$root/.venv-k8s/bin/python" - "$work" <<'PY'
import sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{work}/rendered.yaml")) if d]
config = next(d for d in docs if d["kind"] == "ConfigMap")
endpoint = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("endpoint"))
miner = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "miner")
# The overlay's endpoint config, with the tiny model the test ships instead of a download.
config["data"]["endpoint.toml"] += (
    '\n[models.Tiny]\narch = "sd15"\ncheckpoint = "/models/tiny-sd15.safetensors"\n'
    '[models.Tiny.defaults]\nnum_inference_steps = 2\nwidth = 64\nheight = 64\n'
)
config["data"]["endpoint.toml"] = config["data"]["endpoint.toml"].replace(
    'model_name = "RealisticVision"', 'model_name = "Tiny"')
# The miner: its own embedded chain, unregistered callers admitted, on the host's network
# (ports apart from the endpoint's), generating through the endpoint's published port.
miner_config = config["data"]["miner.toml"]
miner_config = miner_config.replace('network = "finney"', 'network = "embedded"')
miner_config = miner_config.replace('listen = "0.0.0.0:9646"', 'listen = "0.0.0.0:19647"')
miner_config = miner_config.replace("port = 8091", "port = 18091")
miner_config = miner_config.replace("http://endpoint-realisticvision:10006", "http://127.0.0.1:18006")
miner_config += "\n[miner.blacklist]\nallow_non_registered = true\n"
config["data"]["miner.toml"] = miner_config
ms = miner["spec"]["template"]["spec"]
ms["hostNetwork"] = True
mc = ms["containers"][0]
mc["image"] = "localhost/nicheimage-tui:test"
# Host network: no port mappings; the probes name the port by number.
mc.pop("ports", None)
for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
    if kind in mc:
        mc[kind]["httpGet"]["port"] = 19647
ms["volumes"] = [v for v in ms["volumes"] if v["name"] != "hotkey"] + [
    {"name": "hotkey", "hostPath": {"path": f"{work}/wallet", "type": "Directory"}}]
for d in (config, endpoint, miner):
    d["metadata"].pop("namespace", None)
spec = endpoint["spec"]["template"]["spec"]
c = spec["containers"][0]
c["image"] = "localhost/nicheimage-tui:test"
for p in c["ports"]:
    p["hostPort"] = {"generate": 18006, "metrics": 19646}[p["name"]]
c["volumeMounts"].append({"name": "models", "mountPath": "/models", "readOnly": True})
spec["volumes"].append({"name": "models", "hostPath": {"path": f"{work}/models", "type": "Directory"}})
yaml.safe_dump_all([config, endpoint, miner], open(f"{work}/play.yaml", "w"))
PY
started=$(date +%s.%N)
podman kube play "$work/play.yaml" >/dev/null
ready() {
  for _ in $(seq 1 600); do
    "$bin" healthcheck --address "127.0.0.1:${1:-19646}" --timeout 1 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "kube-play.sh: 127.0.0.1:${1:-19646} never ready" >&2; exit 1
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
echo "start to ready (endpoint): $(echo "$(date +%s.%N) - $started" | bc) s"
generate
ready 19647
echo "start to ready (miner): $(echo "$(date +%s.%N) - $started" | bc) s"
# A validator written with bittensor 11.3 asks the miner's axon in the pod for an image.
"$python_today" - "$hotkey" <<'PY'
import json, sys, urllib.request
import bittensor as bt
from bittensor.sp_core import Keypair
body = json.dumps({"prompt": "a lighthouse", "seed": 3, "model_name": "Tiny",
                   "pipeline_type": "txt2img", "pipeline_params": {}}).encode()
headers = bt.http_auth.sign(Keypair.create_from_uri("//Alice"), method="POST",
                            path="/ImageGenerating", body=body, receiver_ss58=sys.argv[1])
request = urllib.request.Request("http://127.0.0.1:18091/ImageGenerating", data=body,
                                 headers={**headers, "content-type": "application/json"})
answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
assert isinstance(answer.get("image"), str) and len(answer["image"]) > 100, answer
print("the miner's axon served a bittensor 11.3 validator through the endpoint pod")
PY
container="$(podman ps --format '{{.Names}}' | grep endpoint | head -1)"
killed=$(date +%s.%N)
# A crash, as the kubelet would see one (podman kill would count as stopped on purpose).
kill -9 "$(podman inspect --format '{{.State.Pid}}' "$container")"
sleep 1
ready
echo "killed to ready again (restartPolicy Always): $(echo "$(date +%s.%N) - $killed" | bc) s"
generate
echo "kube-play.sh: the endpoint and the miner ran from the manifests and served; the endpoint was killed and served again"
