#!/usr/bin/env bash
# The GPU proof kit on the CPU at tiny sizes: the same stages and report as on a lent GPU, so
# the kit cannot rot between GPUs. Uses .venv-parity (diffusers 0.42.1) and the debug binary;
# fails when parity in fp32 or the reward judge disagree. About two minutes on two cores.
#
#   bash scripts/gpu/smoke.sh [BINARY] [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary="${1:-$root/target/debug/nicheimage-tui}"
out="${2:-$root/target/gpu-kit-smoke}"
bash "$root/scripts/parity/setup.sh" >/dev/null
python="$root/.venv-parity/bin/python"
vocab="$root/target/gpu-kit-vocab"
if [ ! -f "$vocab/merges.txt" ]; then
  "$python" -c "import sys; sys.path.insert(0, '$root/scripts/parity'); from sd15 import write_tokenizer; write_tokenizer('$vocab')"
fi
rm -rf "$out"
exec timeout 600 "$python" "$root/scripts/gpu/kit.py" --device cpu --binary "$binary" --out "$out" \
  --vocab "$vocab" --budget-secs 420 --check
