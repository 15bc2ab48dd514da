#!/usr/bin/env bash
# The deterministic ZAB simulator (docs/consensus.md): a bounded number of seeds with crashes,
# torn writes, partitions and message loss, for 3 voters and for 5 voters with 2 observers;
# then the same with dynamic reconfiguration (--reconfig); then client workloads against
# ensembles of production pipelines under crashes and partitions.
# Any safety or liveness violation fails, printing the command that replays the seed.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds3=${SIM_SEEDS_3:-2000}
seeds5=${SIM_SEEDS_5:-1000}
rseeds3=${SIM_RECONFIG_SEEDS_3:-1000}
rseeds5=${SIM_RECONFIG_SEEDS_5:-600}
# Client workloads against ensembles of production pipelines (corral-sim --pipelines).
pseeds3=${SIM_PIPELINE_SEEDS_3:-600}
pseeds5=${SIM_PIPELINE_SEEDS_5:-300}
# A fresh range of seeds every run (SIM_START fixes it); any failing seed replays alone with
# `corral-sim --seed N` and the same --peers/--observers.
start=${SIM_START:-$(( ($(date +%s) % 100000) * 10000 + 1 ))}
echo "simulator: seeds from $start"
cargo build --release --locked -p corral-server --bin corral-sim
target/release/corral-sim --seeds "$seeds3" --start "$start" --peers 3 --threads 2
target/release/corral-sim --seeds "$seeds5" --start "$start" --peers 5 --observers 2 --threads 2
# Dynamic reconfiguration under the same faults (memberships changing at once and one server
# at a time, hand-overs).
target/release/corral-sim --reconfig --seeds "$rseeds3" --start "$start" --peers 3 --threads 2
target/release/corral-sim --reconfig --seeds "$rseeds5" --start "$start" --peers 5 --observers 2 --threads 2
target/release/corral-sim --pipelines --seeds "$pseeds3" --start "$start" --peers 3 --threads 2
target/release/corral-sim --pipelines --seeds "$pseeds5" --start "$start" --peers 5 --observers 2 --threads 2
