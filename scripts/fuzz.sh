#!/usr/bin/env bash
# Bounded fuzzing of every wire parser (cargo fuzz, libFuzzer, nightly).
# Not part of the test command. Each target runs for SECONDS (default 30)
# starting from the committed seeds in fuzz/seeds/<target>; new inputs go to
# fuzz/target/corpus/<target> (ignored), crashes to fuzz/artifacts/<target>.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-${FUZZ_SECONDS:-30}}"
shift || true

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O
failed=()
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${secs}s"
    mkdir -p "target/corpus/$t"
    # Seeds where the target has them (libFuzzer refuses a missing folder).
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    if ! cargo +nightly fuzz run -O "$t" "target/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz failures: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s without a failure"
