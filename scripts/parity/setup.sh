#!/usr/bin/env bash
# Creates .venv-parity with the pinned Python reference (torch, diffusers, transformers, ...)
# and open_clip's copy of CLIP's BPE vocabulary (for the tokenizer files diffusers needs).
# Several GB (torch pulls the CUDA wheels); only needed to regenerate fixtures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-parity"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r "$root/scripts/parity/requirements.txt"
"$venv/bin/pip" install --quiet --no-deps "open-clip-torch==3.3.0"
# controlnet_aux's Canny detector (scripts/parity/canny.py loads only that module from the sdist).
if [ ! -d "$venv/controlnet_aux-0.0.7" ]; then
  "$venv/bin/pip" download --quiet --no-deps --no-binary :all: "controlnet-aux==0.0.7" -d "$venv/downloads"
  tar -xzf "$venv/downloads/controlnet_aux-0.0.7.tar.gz" -C "$venv"
fi
echo "$venv"
