#!/usr/bin/env bash
# Writes the diffusers folders and diffusers' images crates/engine/tests/folders_parity.rs renders against
# (scripts/parity/folders.py under the pinned .venv-parity), into target/parity-folders or
# $NICHEIMAGE_PARITY_FOLDERS. Some 270 MB, so generated, not committed; rewritten only when
# the generator or its pins change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec bash "$root/scripts/parity/generated.sh" \
  "${NICHEIMAGE_PARITY_FOLDERS:-$root/target/parity-folders}" folders.py sd15.py
