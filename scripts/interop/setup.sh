#!/usr/bin/env bash
# Creates the pinned Python references the interop tests talk to (no torch; about a minute):
#   setup.sh         .venv-bittensor        bittensor 10.2.0 (axon/dendrite, bittensor-drand 1.3.0)
#   setup.sh today   .venv-bittensor-today  today's SDK: bittensor 11.3.0, bittensor-wallet 4.1.1, bittensor-drand 2.0.0
# Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
case "${1:-legacy}" in
  legacy) venv="$root/.venv-bittensor" reqs="$root/scripts/interop/requirements.txt" ;;
  today) venv="$root/.venv-bittensor-today" reqs="$root/scripts/interop/requirements-today.txt" ;;
  *) echo "setup.sh: unknown set $1 (legacy or today)" >&2; exit 2 ;;
esac
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$stamp" "$reqs"; then
  echo "$venv"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
cp "$reqs" "$stamp"
echo "$venv"
