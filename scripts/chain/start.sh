#!/usr/bin/env bash
# Runs the real subtensor runtime (node-subtensor spec 218, ../shared/chain/raonet.json or
# $NICHEIMAGE_CHAIN_SPEC) offline under Chopsticks on ws://127.0.0.1:${1:-9944}, one block per
# extrinsic, until Ctrl-C. The genesis gets a fixed timestamp and slot (Chopsticks otherwise
# races its first block); SUDO (default Alice) becomes the sudo key; it and FUND (space-separated
# ss58 addresses) get 10^6 TAO each. Then, e.g.:
#   nicheimage-tui chain --subtensor.network local --subtensor.chain_endpoint ws://127.0.0.1:9944 --netuid 1
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:-9944}"
spec="${NICHEIMAGE_CHAIN_SPEC:-$here/../../../shared/chain/raonet.json}"
sudo_key="${SUDO:-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY}"
[ -f "$spec" ] || { echo "chain/start.sh: no chain spec at $spec (set NICHEIMAGE_CHAIN_SPEC)" >&2; exit 1; }
bash "$here/setup.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$here" && SPEC="$spec" OUT="$work/spec.json" node -e '
  const fs = require("fs");
  const { xxhashAsHex } = require("@polkadot/util-crypto");
  const spec = JSON.parse(fs.readFileSync(process.env.SPEC));
  const key = (p, i) => xxhashAsHex(p, 128) + xxhashAsHex(i, 128).slice(2);
  const le = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return "0x" + b.toString("hex"); };
  const now = Math.floor(Date.now() / 3000) * 3000;
  spec.genesis.raw.top[key("Timestamp", "Now")] = le(now);
  spec.genesis.raw.top[key("Aura", "CurrentSlot")] = le(now / 3000);
  fs.writeFileSync(process.env.OUT, JSON.stringify(spec));
' 2>/dev/null)
{
  printf 'genesis: %s\nhost: 127.0.0.1\nport: %s\nbuild-block-mode: Instant\n' "$work/spec.json" "$port"
  printf 'import-storage:\n  Sudo:\n    Key: %s\n  System:\n    Account:\n' "$sudo_key"
  for account in "$sudo_key" ${FUND:-}; do
    printf '      - [[%s], {providers: 1, data: {free: 1000000000000000}}]\n' "$account"
  done
} >"$work/chopsticks.yml"
echo "chain/start.sh: serving spec 218 on ws://127.0.0.1:$port (Ctrl-C stops it)" >&2
cd "$here" && node_modules/.bin/chopsticks --config "$work/chopsticks.yml" 2>&1 | grep -v "@polkadot\|cjs \|Either remove\|conflicting packages"
