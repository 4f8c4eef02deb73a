#!/usr/bin/env bash
# Creates .venv-bittensor with the pinned Python bittensor SDK (no torch; about a minute).
# The interop tests and the axon benchmark run its axon and dendrite against ours on loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-bittensor"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$stamp" "$root/scripts/interop/requirements.txt"; then
  echo "$venv"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/interop/requirements.txt"
cp "$root/scripts/interop/requirements.txt" "$stamp"
echo "$venv"
