#!/usr/bin/env bash
# Installs Chopsticks (pinned in package-lock.json) into scripts/chain/node_modules, for the
# tests that run the real subtensor runtime (tests/real_chain.rs). Idempotent: reinstalled only
# when the lockfile changes. Install scripts are skipped: the only one, sqlite3's native build,
# serves `--db`, which the tests do not use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ -f "$here/node_modules/.stamp" ] && [ "$(cat "$here/node_modules/.stamp")" = "$stamp" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "chain/setup.sh: npm (node 20) is needed for Chopsticks" >&2; exit 1; }
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
echo "$stamp" >"$here/node_modules/.stamp"
echo "chain/setup.sh: Chopsticks installed" >&2
