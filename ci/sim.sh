#!/usr/bin/env bash
# The deterministic ZAB simulator (docs/consensus.md): a bounded number of seeds with crashes,
# torn writes, partitions and message loss, for 3 voters and for 5 voters with 2 observers.
# Any safety or liveness violation fails, printing the command that replays the seed.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds3=${SIM_SEEDS_3:-2000}
seeds5=${SIM_SEEDS_5:-1000}
cargo build --release --locked -p corral-server --bin corral-sim
target/release/corral-sim --seeds "$seeds3" --start 1 --peers 3 --threads 2
target/release/corral-sim --seeds "$seeds5" --start 1 --peers 5 --observers 2 --threads 2
