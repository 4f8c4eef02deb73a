#!/usr/bin/env bash
# Builds the node's image with podman (or buildah) from deploy/container/Containerfile.
#   build.sh [--debug] [--base IMAGE] [--tag NAME]
# Stages a context with the release binary (or the debug one: --debug, for tests) and the
# libtorch libraries it links (from .libtorch/current, as scripts/setup-libtorch.sh made it:
# cpu or cuda), then builds. Nothing from a wallet or the data dir goes in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
profile=release base=docker.io/library/debian:bookworm-slim tag=nicheimage-tui:latest
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --base) base="$2"; shift ;;
    --tag) tag="$2"; shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
bin="$root/target/$profile/nicheimage-tui"
if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release --locked --bin nicheimage-tui)
fi
[ -x "$bin" ] || { echo "build.sh: $bin is missing (cargo build first)" >&2; exit 1; }
lib="$root/.libtorch/current/lib"
[ -d "$lib" ] || { echo "build.sh: no libtorch at $lib (scripts/setup-libtorch.sh)" >&2; exit 1; }
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/libtorch"
cp "$bin" "$context/bin/"
# Only the libraries the binary loads, libtorch's own dependencies included.
cp -L "$lib"/*.so* "$context/libtorch/"
tool=podman
command -v podman >/dev/null || tool=buildah
started=$(date +%s)
if [ "$tool" = buildah ]; then
  buildah bud --build-arg "BASE=$base" -f "$root/deploy/container/Containerfile" -t "$tag" "$context"
else
  podman build --build-arg "BASE=$base" -f "$root/deploy/container/Containerfile" -t "$tag" "$context"
fi
echo "build.sh: built $tag from $base in $(( $(date +%s) - started )) s"
