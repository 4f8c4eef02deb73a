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
echo "$venv"
