#!/usr/bin/env bash
# Writes the tiny FLUX.1-schnell folders and diffusers' images crates/engine/tests/flux_parity.rs
# renders against (scripts/parity/flux.py under the pinned .venv-parity), into target/parity-flux
# or $NICHEIMAGE_PARITY_FLUX. Generated, not committed; rewritten only when the generator or its
# pins change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${NICHEIMAGE_PARITY_FLUX:-$root/target/parity-flux}"
stamp="$(cat "$root"/scripts/parity/{flux.py,sd15.py,requirements.txt,setup.sh} | sha256sum | cut -d' ' -f1)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "flux.sh: $out is up to date" >&2
  exit 0
fi
bash "$root/scripts/parity/setup.sh" >/dev/null
rm -rf "$out.partial"
mkdir -p "$(dirname "$out")"
"$root/.venv-parity/bin/python" "$root/scripts/parity/flux.py" "$out.partial" >/dev/null 2>&1 \
  || { "$root/.venv-parity/bin/python" "$root/scripts/parity/flux.py" "$out.partial"; exit 1; }
echo "$stamp" >"$out.partial/.stamp"
rm -rf "$out"
mv "$out.partial" "$out"
echo "flux.sh: wrote $out" >&2
