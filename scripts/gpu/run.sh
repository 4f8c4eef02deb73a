#!/usr/bin/env bash
# On the GPU machine, from the carried kit folder: installs the kit's wheels into the kit's own
# folder (the machine's packages stay as they are), points our binary at the machine's torch/lib
# and runs the kit. Everything else is kit.py's.
#
#   bash target/gpu-kit/run.sh OUT_DIR [kit.py flags, e.g. --budget-secs 300 --only sdxl]
set -euo pipefail
kit="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$1"
shift
py="${PYTHON:-python3}"
mkdir -p "$out"
if [ ! -f "$kit/py/.installed" ]; then
  "$py" -m pip install --quiet --no-index --no-deps --target "$kit/py" "$kit"/wheels/*.whl
  touch "$kit/py/.installed"
fi
export PYTHONPATH="$kit/py${PYTHONPATH:+:$PYTHONPATH}"
torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$kit/nicheimage-tui"
if [ ! -x "$bin" ]; then # xz-packed to fit the carry limit; Python unpacks it (xz may be absent)
  "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$bin.xz" "$bin"
  chmod +x "$bin"
fi
if ! "$bin" --version >"$out/binary.txt" 2>&1; then
  echo "run.sh: our binary does not start here (it needs $(cat "$kit/glibc-needed"); this machine has" \
    "$(ldd --version | head -1)):" >&2
  cat "$out/binary.txt" >&2
  exit 1
fi
exec "$py" "$kit/kit.py" --binary "$bin" --out "$out" --vocab "$kit/vocab" "$@"
