#!/usr/bin/env bash
# Sets up what the tests need (libtorch) and runs every check CI runs: format, lints (with and
# without local inference), and the tests. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "test.sh: installing the $component component" >&2
    rustup component add "$component"
  fi
done

bash scripts/setup-libtorch.sh "${NICHEIMAGE_LIBTORCH_MODE:-auto}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Without local inference: the node and the console built without the engine (libtorch).
cargo clippy --all-targets --locked --no-default-features \
  -p nicheimage-tui -p nicheimage-node -p nicheimage-bittensor -p nicheimage-common -- -D warnings
# Diffusers-saved folders for crates/engine/tests/folders_parity.rs and crates/engine/tests/flux_parity.rs
# (the pinned Python reference, once); their tests must then run, not skip.
bash scripts/parity/folders.sh
bash scripts/parity/flux.sh
export NICHEIMAGE_REQUIRE_PARITY=1
# Chopsticks for tests/real_chain.rs, which must run here (not skip) when the spec is present.
bash scripts/chain/setup.sh
if [ -f ../shared/chain/raonet.json ] || [ -n "${NICHEIMAGE_CHAIN_SPEC:-}" ]; then
  export NICHEIMAGE_REQUIRE_CHAIN=1
fi
# dnsmasq for tests/dns_replicas.rs (real DNS in a network namespace of the test's own; root).
if [ "$(id -u)" = 0 ] && ! command -v dnsmasq >/dev/null; then
  (apt-get install -y -q dnsmasq-base >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dnsmasq-base >/dev/null 2>&1; }) \
    || echo "test.sh: could not install dnsmasq-base" >&2
fi
if [ "$(id -u)" = 0 ] && command -v dnsmasq >/dev/null && command -v ip >/dev/null \
  && unshare --net --mount true 2>/dev/null; then
  export NICHEIMAGE_REQUIRE_NETNS=1
fi
cargo test --workspace --locked
# The GPU proof kit at tiny sizes on the CPU: same stages and report as on a GPU (README).
bash scripts/gpu/smoke.sh target/debug/nicheimage-tui
# deploy/k8s: rendered, validated against Kubernetes' schemas, probes checked against the node.
if command -v kubectl >/dev/null; then
  bash scripts/k8s/check.sh target/debug/nicheimage-tui
else
  echo "test.sh: no kubectl here, so deploy/k8s is not rendered or validated" >&2
fi
# The CPU-only console (no libtorch) must keep working on its own.
cargo test --locked --no-default-features --lib \
  -p nicheimage-tui -p nicheimage-node -p nicheimage-bittensor -p nicheimage-common
