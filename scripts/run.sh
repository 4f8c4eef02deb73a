#!/usr/bin/env bash
# Sets up libtorch, builds the release binary and starts the node console. Arguments are
# passed to nicheimage-tui (e.g. `scripts/run.sh --no-ui`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup-libtorch.sh "${NICHEIMAGE_LIBTORCH_MODE:-auto}" >&2
cargo build --release --locked >&2
exec target/release/nicheimage-tui "$@"
