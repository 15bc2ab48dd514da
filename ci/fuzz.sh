#!/usr/bin/env bash
# A short run of every cargo-fuzz target in fuzz/ (the pipeline fed hostile request streams,
# zab::wire quorum decoders, and one per decoder: request frames, the
# ConnectRequest, logged txns, snapshots, log segments, reply bodies). Nightly toolchain;
# cargo-fuzz is installed if missing. FUZZ_SECONDS per target (default 10, which keeps CI's
# whole run under 45 minutes; a campaign: FUZZ_SECONDS=600 bash ci/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-10}
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "SKIPPED fuzzing: cargo-fuzz needs the nightly toolchain, which this machine does not have"
    exit 0
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# Seeds: real ZooKeeper files for the snapshot and txn decoders.
mkdir -p fuzz/corpus/zk_snapshot fuzz/corpus/txn
cp -f server/tests/data/zk-3.8.0/snapshot.* server/tests/data/zk-3.8.0-multi/snapshot.* fuzz/corpus/zk_snapshot/ 2>/dev/null || true
cd fuzz
for target in $(cargo +nightly fuzz list); do
    echo "--- fuzzing $target for ${seconds}s"
    # The target's own status, and its build errors shown (pipefail would stop the script
    # before the message below).
    set +e
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 2>&1 | grep -E "^(#|stat::number_of_executed_units|Done|==|SUMMARY|thread|error)" | tail -n 12
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $target failed (exit $status); crash inputs are in fuzz/artifacts/$target"
        exit 1
    fi
done
