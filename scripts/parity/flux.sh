#!/usr/bin/env bash
# Writes the tiny FLUX.1-schnell folders and diffusers' images crates/engine/tests/flux_parity.rs
# and tests/flux_endpoint.rs render against (scripts/parity/flux.py under the pinned
# .venv-parity), into target/parity-flux or $NICHEIMAGE_PARITY_FLUX. Generated, not committed;
# rewritten only when the generator or its pins change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec bash "$root/scripts/parity/generated.sh" \
  "${NICHEIMAGE_PARITY_FLUX:-$root/target/parity-flux}" flux.py sd15.py
