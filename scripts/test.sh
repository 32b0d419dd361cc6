#!/usr/bin/env bash
# All tests: formatting, lints, unit tests, deterministic simulations and the
# veth integration tests with the Linux kernel as the peer (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (profile ci: optimised, with debug assertions and overflow checks)"
cargo test --profile ci --locked "$@"
