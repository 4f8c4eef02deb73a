#!/usr/bin/env bash
# Runs a parity generator of scripts/parity under the pinned .venv-parity into OUT_DIR, once:
# again only when the generator, its helpers or the pins change (a stamp of them in OUT_DIR).
#
#   bash scripts/parity/generated.sh OUT_DIR GENERATOR.py [HELPER.py...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$1"
generator="$2"
shift 2
name="$(basename "$generator" .py)"
stamp="$(cd "$here" && cat "$generator" "$@" requirements.txt setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "$name: $out is up to date" >&2
  exit 0
fi
bash "$here/setup.sh" >/dev/null
rm -rf "$out.partial"
mkdir -p "$out.partial"
if ! "$here/../../.venv-parity/bin/python" "$here/$generator" "$out.partial" >"$out.partial.log" 2>&1; then
  tail -40 "$out.partial.log" >&2
  echo "$name: the generator failed (log: $out.partial.log)" >&2
  exit 1
fi
rm -f "$out.partial.log"
echo "$stamp" >"$out.partial/.stamp"
rm -rf "$out"
mv "$out.partial" "$out"
echo "$name: wrote $out" >&2
