#!/usr/bin/env bash
# Assemble the libtorch 2.11.0 that tch 0.24 links against, from pinned PyPI wheels.
#
#   scripts/setup-libtorch.sh [cpu|cuda|auto]     (default: auto)
#
# cpu : cut a CPU-only libtorch (~500 MB) out of the torch==2.11.0 wheel, plus the two small
#       CUDA runtime wheels libtorch_cpu.so names as DT_NEEDED (they load fine without a GPU).
# cuda: install the full torch==2.11.0 (CUDA 13) into .libtorch/venv and link against it.
# auto: cuda when an NVIDIA driver is present, else cpu.
#
# Every download is sha256-pinned. The result is linked at .libtorch/current, which
# .cargo/config.toml hands to torch-sys as LIBTORCH. A second run with the same mode is instant.
# An existing Python torch 2.11 can be used instead: export LIBTORCH_USE_PYTORCH=1 and skip this.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${NICHEIMAGE_LIBTORCH_DIR:-$root/.libtorch}"
mode="${1:-auto}"
python="${PYTHON:-python3}"

torch_whl="torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"
torch_sha="7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"
cudart_whl="nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
cudart_sha="7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
cupti_whl="nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl"
cupti_sha="4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8"

log() { echo "setup-libtorch: $*" >&2; }

if [ "$mode" = auto ]; then
  if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then
    mode=cuda
  else
    mode=cpu
  fi
fi

stamp="$dest/$mode/.complete"
want="torch-2.11.0 $torch_sha $mode"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  ln -sfn "$(cat "$dest/$mode/.libtorch-path")" "$dest/current"
  log "libtorch 2.11.0 ($mode) already in place at $dest/current"
  exit 0
fi

mkdir -p "$dest"
work="$dest/$mode"
rm -rf "$work"
mkdir -p "$work"

# Download one pinned wheel by exact file name, whatever the local Python's version.
fetch_wheel() { # <requirement> <file> <sha256> <platform>
  local req="$1" file="$2" sha="$3" platform="$4" dl="$dest/downloads"
  mkdir -p "$dl"
  if [ -f "$dl/$file" ] && echo "$sha  $dl/$file" | sha256sum -c --status; then
    return 0
  fi
  rm -f "$dl/$file"
  local reqfile
  reqfile="$(mktemp)"
  echo "$req --hash=sha256:$sha" >"$reqfile"
  log "downloading $file"
  "$python" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform "$platform" \
    -r "$reqfile" -d "$dl"
  rm -f "$reqfile"
  echo "$sha  $dl/$file" | sha256sum -c --status || { log "sha256 mismatch for $file"; exit 1; }
}

case "$mode" in
  cpu)
    fetch_wheel "torch==2.11.0" "$torch_whl" "$torch_sha" manylinux_2_28_x86_64
    fetch_wheel "nvidia-cuda-runtime==13.0.96" "$cudart_whl" "$cudart_sha" manylinux2014_x86_64
    fetch_wheel "nvidia-cuda-cupti==13.0.85" "$cupti_whl" "$cupti_sha" manylinux_2_25_x86_64
    out="$work/libtorch"
    mkdir -p "$out/lib" "$work/unpack"
    log "extracting the CPU parts of $torch_whl"
    "$python" - "$dest/downloads" "$work/unpack" "$torch_whl" "$cudart_whl" "$cupti_whl" <<'PY'
import sys, zipfile, os
dl, out, torch, cudart, cupti = sys.argv[1:]
def keep_torch(name):
    if name.startswith("torch/include/"):
        return True
    base = os.path.basename(name)
    return name.startswith("torch/lib/") and (
        base in ("libc10.so", "libtorch_cpu.so") or base.startswith("libgomp"))
with zipfile.ZipFile(os.path.join(dl, torch)) as z:
    z.extractall(out, [n for n in z.namelist() if keep_torch(n)])
for whl in (cudart, cupti):
    with zipfile.ZipFile(os.path.join(dl, whl)) as z:
        z.extractall(out, [n for n in z.namelist() if ".so" in os.path.basename(n)])
PY
    mv "$work/unpack/torch/include" "$out/include"
    mv "$work/unpack/torch/lib/"* "$out/lib/"
    find "$work/unpack" -name 'libcudart.so*' -o -name 'libcupti.so*' | while read -r f; do
      mv "$f" "$out/lib/"
    done
    rm -rf "$work/unpack"
    # torch-sys always links -ltorch; on CPU libtorch_cpu is all of it.
    ln -sfn libtorch_cpu.so "$out/lib/libtorch.so"
    echo "2.11.0" >"$out/build-version"
    # The wheel must not be kept twice: the extracted copy is what we use.
    rm -f "$dest/downloads/$torch_whl"
    ;;
  cuda)
    venv="$work/venv"
    log "installing torch==2.11.0 with CUDA into $venv (several GB)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet "torch==2.11.0"
    out="$("$venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
    echo "2.11.0" >"$out/build-version"
    ;;
  *)
    log "unknown mode '$mode' (cpu, cuda or auto)"
    exit 2
    ;;
esac

echo "$out" >"$work/.libtorch-path"
echo "$want" >"$stamp"
ln -sfn "$out" "$dest/current"
log "libtorch 2.11.0 ($mode) ready at $dest/current"
