#!/usr/bin/env bash
# The simulator's mutation check (docs/consensus.md): applies each deliberate bug of
# ci/mutations/mutate.py in turn, builds corral-sim, runs 300 seeds with 3 voters and 150 with
# 5 voters + 2 observers (the replica simulator; for "pipeline-" mutations 1000 and 500 seeds
# of client workloads against pipelines, corral-sim --pipelines), reports how many seeds found
# it, and restores the file. Not part of
# ci/test.sh (about a minute per mutation); run it after changing zab/, sim/ or the log.
#
#   ci/sim-mutations.sh                  every mutation
#   ci/sim-mutations.sh NAME [NAME ...]  some (names: python3 ci/mutations/mutate.py --list)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git diff --quiet -- engine/src server/src; then
    echo "engine/src or server/src has uncommitted changes; commit or stash them first" >&2
    exit 2
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    mapfile -t names < <(python3 ci/mutations/mutate.py --list)
fi
out=target/sim-mutations
sim="${CARGO_TARGET_DIR:-target}/release/corral-sim"
mkdir -p "$out"
missed=0
for m in "${names[@]}"; do
    file=$(python3 ci/mutations/mutate.py "$m")
    trap 'git checkout -q -- "$file"' EXIT
    if ! cargo build --release -p corral-server --bin corral-sim > "$out/$m.build" 2>&1; then
        echo "$m: the mutation does not build (see $out/$m.build)"
        git checkout -q -- "$file"
        exit 1
    fi
    git checkout -q -- "$file"
    trap - EXIT
    mode=()
    summary="seeds"
    runs=("3 0 300" "5 2 150")
    if [[ "$m" == pipeline-* ]]; then
        # Client-level bugs show in fewer seeds; these runs are cheap.
        mode=(--pipelines)
        summary="pipelines: seeds"
        runs=("3 0 1000" "5 2 500")
    fi
    for run in "${runs[@]}"; do
        set -- $run
        "$sim" "${mode[@]}" --seeds "$3" --start 1 --peers "$1" --observers "$2" --threads 2 \
            > "$out/$m.$1.txt" 2>&1 || true
        if ! grep -q "^$summary: $3," "$out/$m.$1.txt"; then
            # A run that did not finish proves nothing either way.
            echo "$m, $1 voters + $2 observers: the simulator did not complete (see $out/$m.$1.txt)"
            exit 1
        fi
        failing=0
        if grep -q "^failing seeds" "$out/$m.$1.txt"; then
            failing=$(( $(grep "^failing seeds" "$out/$m.$1.txt" | tr -cd ',' | wc -c) + 1 ))
        fi
        first=$(grep -m1 -A1 "violation(s)$" "$out/$m.$1.txt" | tail -n +2 || true)
        echo "$m, $1 voters + $2 observers: $failing of $3 seeds failed; first: ${first# }"
        [ "$failing" -gt 0 ] || missed=$((missed + 1))
    done
done
cargo build --release -p corral-server --bin corral-sim > /dev/null 2>&1
if [ "$missed" -gt 0 ]; then
    echo "$missed run(s) missed their mutation"
    exit 1
fi
echo "every mutation was found"
