#!/usr/bin/env bash
# Writes the diffusers folders and diffusers' images tests/folders_parity.rs renders against
# (scripts/parity/folders.py under the pinned .venv-parity), into target/parity-folders or
# $NICHEIMAGE_PARITY_FOLDERS. Some 270 MB, so generated, not committed; rewritten only when
# the generator or its pins change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${NICHEIMAGE_PARITY_FOLDERS:-$root/target/parity-folders}"
stamp="$(cat "$root"/scripts/parity/{folders.py,sd15.py,requirements.txt,setup.sh} | sha256sum | cut -d' ' -f1)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "folders.sh: $out is up to date" >&2
  exit 0
fi
bash "$root/scripts/parity/setup.sh" >/dev/null
rm -rf "$out.partial"
mkdir -p "$(dirname "$out")"
"$root/.venv-parity/bin/python" "$root/scripts/parity/folders.py" "$out.partial" >/dev/null
echo "$stamp" >"$out.partial/.stamp"
rm -rf "$out"
mv "$out.partial" "$out"
echo "folders.sh: wrote $out" >&2
