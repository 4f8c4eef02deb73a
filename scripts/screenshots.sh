#!/usr/bin/env bash
# Regenerates screenshots/*.png from the real program: runs it in a tmux pane with no config
# (fresh XDG dirs, so it runs the local devnet), lets the subnet live for a while, walks through
# the views, captures the pane with its colours, and renders it with Pillow.
# Needs tmux and the DejaVu fonts (Debian: tmux fonts-dejavu-core).
# NICHEIMAGE_BIN picks the binary (default: the release build, built if missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cols=100 rows=30
venv="$root/.venv-tools"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "Pillow==13.0.0"; }
bin="${NICHEIMAGE_BIN:-target/release/nicheimage-tui}"
[ -x "$bin" ] || cargo build --release --locked
# tmux starts the pane in its own working directory: hand it an absolute path.
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
session="nicheimage-shot-$$"
tmux new-session -d -s "$session" -x "$cols" -y "$rows" \
  "env HOME=$work XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data $bin"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work"' EXIT
shot() { # <name>
  tmux capture-pane -e -p -t "$session" >"$work/$1.txt"
  "$venv/bin/python" scripts/screenshot_render.py "$work/$1.txt" "screenshots/$1.png" "$cols" "$rows"
  echo "screenshots/$1.png"
}
key() { tmux send-keys -t "$session" "$@"; sleep 1; }
# Rounds, weights and proxy traffic need a minute to build up.
sleep "${NICHEIMAGE_SHOT_WAIT:-60}"
shot overview
key 3; shot miners
key 4; shot validator
key 5; shot proxy
key 6; shot gpu
key 7; shot logs
key 8; shot gallery
key 1 '?'; shot help
key Escape p; shot confirm
key n 2 j x; shot kill
key y; sleep 1; shot killed
key q y
