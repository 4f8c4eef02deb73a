#!/usr/bin/env bash
# Regenerates screenshots/*.png from the real program: runs it in a tmux pane with no config
# (fresh XDG dirs), captures the pane with its colours, and renders it with Pillow.
# Needs tmux and the DejaVu fonts (Debian: tmux fonts-dejavu-core).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cols=100 rows=30
venv="$root/.venv-tools"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "Pillow==13.0.0"; }
bin="${NICHEIMAGE_BIN:-target/release/nicheimage-tui}"
[ -x "$bin" ] || cargo build --release --locked
work="$(mktemp -d)"
session="nicheimage-shot-$$"
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "env XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data $bin"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work"' EXIT
shot() { # <name>
  tmux capture-pane -e -p -t "$session" >"$work/$1.txt"
  "$venv/bin/python" scripts/screenshot_render.py "$work/$1.txt" "screenshots/$1.png" "$cols" "$rows"
  echo "screenshots/$1.png"
}
sleep 5
shot overview
tmux send-keys -t "$session" '?'
sleep 1
shot help
tmux send-keys -t "$session" Escape j r
sleep 1
shot confirm
tmux send-keys -t "$session" n q

# The console with the endpoint enabled on the tiny model, after a few requests.
sleep 1
tmux kill-session -t "$session" 2>/dev/null || true
"$bin" tiny-checkpoint --out "$work/models" >/dev/null
cat >"$work/endpoint.toml" <<TOML
[node]
device = "cpu"
[metrics]
listen = "127.0.0.1:19646"
[endpoint]
enabled = true
model_name = "Tiny"
host = "127.0.0.1"
port = 18006
num_replicas = 2
[models.Tiny]
arch = "sd15"
checkpoint = "$work/models/tiny-sd15.safetensors"
[models.Tiny.defaults]
num_inference_steps = 4
width = 64
height = 64
TOML
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "env XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data $bin --config $work/endpoint.toml"
for _ in $(seq 60); do
  curl -fs http://127.0.0.1:18006/info >/dev/null 2>&1 && break
  sleep 1
done
sleep 8
for seed in 1 2 3 4 5 6; do
  curl -s -o /dev/null -X POST http://127.0.0.1:18006/generate \
    -H 'content-type: application/json' -d "{\"prompt\":\"a cat\",\"seed\":$seed,\"pipeline_type\":\"txt2img\"}" &
done
wait
sleep 2
shot endpoint
tmux send-keys -t "$session" q
