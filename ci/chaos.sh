#!/usr/bin/env bash
# Process-level faults (docs/reliability.md): three corral servers, each in a network namespace
# with its data on a filesystem of its own, under every fault kind once (kill -9, SIGSTOP,
# partitions whole and one-way, fsync stalls, disk full, a wiped data directory) while clients
# write and read; the histories are checked for linearizability, lost writes and convergence.
# Then the checker's own check: a server built to lose acknowledged writes (a test-only key
# that commits without a quorum) must be caught.
#
# Needs root (namespaces, nftables, loop mounts). CHAOS_ROUNDS (default 1) rounds of every
# fault kind; CHAOS_SEED fixes the schedule (printed either way); CHAOS_ARGS adds options.
# A long campaign: docs/reliability.md, "Running a campaign".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "chaos: SKIPPED — needs root (network namespaces, nftables rules, loop mounts); run as root"
    exit 0
fi
cargo build --release --locked -p corral-server -p corral-bench
rounds=${CHAOS_ROUNDS:-1}
seed=${CHAOS_SEED:-$(( $(date +%s) % 1000000 ))}
work=$(mktemp -d /tmp/corral-chaos.XXXXXX)
echo "chaos: seed $seed, $rounds round(s) of every fault kind; reports under $work"
# shellcheck disable=SC2086
target/release/corral-bench chaos --system corral --nodes 3 --rounds "$rounds" --seconds 900 \
    --hold-min-secs 4 --hold-max-secs 6 --seed "$seed" \
    --dir "$work/lab" --out "$work/corral" ${CHAOS_ARGS:-} > "$work/corral.json"
cat "$work/corral.json"

echo "chaos: a server that commits without a quorum must be caught"
if target/release/corral-bench chaos --system corral --nodes 3 --rounds 2 --seconds 300 \
    --faults partition-leader --seed "$seed" \
    --corral-cfg corral.test.unsafeCommitWithoutQuorum=true \
    --dir "$work/lab-broken" --out "$work/broken" > "$work/broken.json" 2> "$work/broken.err"; then
    echo "FAILED: no anomaly found against a server that commits without a quorum"
    cat "$work/broken.json"
    exit 1
fi
if ! grep -q 'not linearizable\|acknowledged sequential creates missing\|acknowledged to two creates' \
    "$work/broken/summary.json"; then
    echo "FAILED: the broken run failed without the anomalies it must show:"
    tail -20 "$work/broken.err"
    exit 1
fi
grep -o '"register [^"]*not linearizable[^"]*"\|"[0-9]* acknowledged sequential[^"]*"\|"[0-9]* sequential names[^"]*"' \
    "$work/broken/summary.json" | head -5
echo "chaos: caught"
rm -rf "$work"
