#!/usr/bin/env bash
# A long chaos campaign (docs/reliability.md, "Running a campaign"): runs of every fault kind,
# CHAOS_ROUNDS rounds each (default 3), one after another until CHAOS_MINUTES have passed
# (default 60), cycling through the systems in CHAOS_SYSTEMS (default "corral mixed
# zookeeper"), each run with the next seed from CHAOS_SEED (default: from the clock). Every
# run's summary is appended to $CHAOS_OUT/summaries.jsonl (default /tmp/corral-chaos-campaign);
# a run with an anomaly keeps its report (history, timelines, server logs) under $CHAOS_OUT.
# Exits non-zero if any run found an anomaly. Needs root. CHAOS_BIN_DIR names a directory
# holding prebuilt corral-bench and corral binaries (so the tree can be rebuilt while a
# campaign runs); by default they are built into target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CHAOS_BIN_DIR:-}
if [ -z "$bin" ]; then
    cargo build --release --locked -p corral-server -p corral-bench
    bin=target/release
fi
minutes=${CHAOS_MINUTES:-60}
rounds=${CHAOS_ROUNDS:-3}
systems=${CHAOS_SYSTEMS:-corral mixed zookeeper}
seed=${CHAOS_SEED:-$(( $(date +%s) % 1000000 * 100 ))}
out=${CHAOS_OUT:-/tmp/corral-chaos-campaign}
mkdir -p "$out"
end=$(( $(date +%s) + minutes * 60 ))
runs=0
failed=0
while [ "$(date +%s)" -lt "$end" ]; do
    for system in $systems; do
        [ "$(date +%s)" -lt "$end" ] || break
        runs=$((runs + 1))
        report="$out/run-$seed-$system"
        echo "== run $runs: $system, seed $seed"
        # shellcheck disable=SC2086
        if "$bin/corral-bench" chaos --system "$system" --nodes 3 --rounds "$rounds" \
            --seconds 1200 --seed "$seed" --dir "$out/lab" --out "$report" \
            --corral-bin "$bin/corral" ${CHAOS_ARGS:-} \
            > "$report.json" 2> "$report.err"; then
            rm -rf "$report" "$report.err"
        else
            failed=$((failed + 1))
            echo "   ANOMALY or failure: see $report and $report.err"
            grep '^ANOMALY\|^Error' "$report.err" | head -5 || true
        fi
        if [ -s "$report.json" ]; then
            python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' \
                "$report.json" >> "$out/summaries.jsonl"
        fi
        rm -f "$report.json"
        seed=$((seed + 1))
    done
done
echo "campaign: $runs runs, $failed with anomalies or failures; summaries in $out/summaries.jsonl"
[ "$failed" -eq 0 ]
