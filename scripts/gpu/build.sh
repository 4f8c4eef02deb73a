#!/usr/bin/env bash
# Prepares the GPU proof kit here, for one call on a lent GPU machine (no Rust, no network there):
#
#   bash scripts/gpu/build.sh [KIT_DIR]    (default target/gpu-kit, what the device call carries)
#
# KIT_PYTHON (default 3.12, the GPU machine's) picks the wheels' Python: 3.11 rehearses the whole
# run here on the CPU with .venv-parity's Python (see README, "On a GPU").
#
# 1. a release nicheimage-tui linked against the pinned CUDA torch 2.11.0 wheel (the one in
#    .venv-parity, via LIBTORCH_USE_PYTORCH=1), in its own target dir so the CPU build stays;
# 2. the wheels the GPU machine lacks (scripts/gpu/requirements.txt) for its Python 3.12;
# 3. CLIP's vocabulary files, and the kit's Python (kit.py, models.py and the two parity helpers).
#
# target/gpu-kit stays under the device tool's 64 MiB (the binary is stripped and xz-packed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
kit="${1:-$root/target/gpu-kit}"
pyver="${KIT_PYTHON:-3.12}"
abi="cp${pyver/./}"
venv="$root/.venv-parity"
log() { echo "gpu/build.sh: $*" >&2; }

bash "$root/scripts/parity/setup.sh" >/dev/null
log "building the CUDA-linked release binary (minutes on two cores)"
(
  cd "$root"
  VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 \
    CARGO_TARGET_DIR="$root/target/gpu-build" cargo build --release --locked --bin nicheimage-tui
)
bin="$root/target/gpu-build/release/nicheimage-tui"
if ! readelf -d "$bin" | grep -q 'libtorch_cuda.so'; then
  log "the binary does not link libtorch_cuda.so: CUDA would be missing on the GPU"
  exit 1
fi

rm -rf "$kit.partial"
mkdir -p "$kit.partial/wheels"
strip -o "$kit.partial/nicheimage-tui" "$bin"
xz -T0 -6 "$kit.partial/nicheimage-tui"
objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 >"$kit.partial/glibc-needed"

log "downloading the wheels for Python $pyver"
"$venv/bin/pip" download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --abi "$abi" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  -r "$root/scripts/gpu/requirements.txt" -d "$kit.partial/wheels"

"$venv/bin/python" -c "import sys; sys.path.insert(0, '$root/scripts/parity'); \
from sd15 import write_tokenizer; write_tokenizer('$kit.partial/vocab')"
cp "$root/scripts/gpu/"{kit.py,models.py,run.sh} "$root/scripts/parity/"{sd15.py,img2img.py} "$kit.partial/"

rm -rf "$kit"
mv "$kit.partial" "$kit"
size="$(du -sm "$kit" | cut -f1)"
log "ready: $kit (${size} MiB; the binary needs $(cat "$kit/glibc-needed") or newer)"
if [ "$size" -ge 64 ]; then
  log "too large for the device tool's 64 MiB"
  exit 1
fi
