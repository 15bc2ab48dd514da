#!/usr/bin/env bash
# Profiles three corral servers as an ensemble under setData 1 KiB (corral-bench ensemble's
# workload a) and writes flamegraphs/ensemble-a-leader.svg and ensemble-a-follower.svg.
#
#   flamegraphs/profile-ensemble.sh [seconds]
#
# The three servers run pinned to core 0 (the zoo.cfg of `corral-bench ensemble`: tickTime
# 2000, fsync on) in fresh data directories under $PROFILE_DIR (default ./corral-bench-data);
# `corral-bench load` (8 sessions × 64 outstanding, round robin over the three servers) runs
# pinned to core 1; after the setup and a warm-up, `perf record -e cpu-clock` samples the
# leader and one follower at once for [seconds] (default 10). Stacks are unwound with DWARF.
# Only the servers this script starts are signalled, by their PIDs; only 127.0.0.1 is used.
set -euo pipefail

seconds=${1:-10}
case $seconds in '' | *[!0-9]*) echo "seconds must be a whole number" >&2; exit 2 ;; esac
if ((seconds < 1 || seconds > 120)); then echo "seconds must be in 1..120" >&2; exit 2; fi

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
port=${PROFILE_PORT:-22291}
warmup=4

cargo build --release -p corral-server -p corral-bench
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    cargo install inferno --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

base=${PROFILE_DIR:-$repo/corral-bench-data}
mkdir -p "$base"
work=$(mktemp -d "$base/profile-ensemble.XXXXXX")
pids=()
loadpid=
cleanup() {
    if [[ -n $loadpid ]] && kill -0 "$loadpid" 2>/dev/null; then kill "$loadpid" 2>/dev/null || true; fi
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

client() { echo $((port + 3 * ($1 - 1))); }
for i in 1 2 3; do
    mkdir -p "$work/s$i/data"
    echo "$i" >"$work/s$i/data/myid"
    {
        echo "tickTime=2000"; echo "initLimit=10"; echo "syncLimit=5"
        echo "dataDir=$work/s$i/data"; echo "clientPort=$(client "$i")"
        echo "clientPortAddress=127.0.0.1"; echo "forceSync=yes"; echo "maxClientCnxns=0"
        echo "4lw.commands.whitelist=*"; echo "admin.enableServer=false"
        for j in 1 2 3; do
            c=$(client "$j")
            echo "server.$j=127.0.0.1:$((c + 1)):$((c + 2)):participant"
        done
    } >"$work/s$i/zoo.cfg"
    if (exec 3<>"/dev/tcp/127.0.0.1/$(client "$i")") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$(client "$i")" >&2
        exit 1
    fi
done
for i in 1 2 3; do
    RUST_LOG=warn taskset -c 0 "$target/release/corral" "$work/s$i/zoo.cfg" >"$work/s$i/server.log" 2>&1 &
    pids+=($!)
done

mode() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && cat <&3) 2>/dev/null | sed -n 's/^Mode: //p'; }
leader=
follower=
for _ in $(seq 1 300); do
    leader=
    follower=
    for i in 1 2 3; do
        case $(mode "$(client "$i")") in
        leader) leader=$i ;;
        follower) follower=$i ;;
        esac
    done
    [[ -n $leader && -n $follower ]] && break
    sleep 0.1
done
[[ -n $leader && -n $follower ]] || { echo "no leader within 30 s" >&2; exit 1; }
echo "leader: server $leader; profiling it and follower $follower"

hosts="127.0.0.1:$(client 1),127.0.0.1:$(client 2),127.0.0.1:$(client 3)"
taskset -c 1 "$target/release/corral-bench" load --server "$hosts" --sessions 8 --outstanding 64 \
    --op set --value-bytes 1024 --warmup "$warmup" --seconds "$((seconds + 3))" >"$work/load.txt" &
loadpid=$!
sleep "$((warmup + 2))"
lp=${pids[$((leader - 1))]}
fp=${pids[$((follower - 1))]}
perf record -e cpu-clock -F 499 --call-graph dwarf -p "$lp" -o "$work/leader.data" -- sleep "$seconds" 2>"$work/perf-l.log" &
pl=$!
perf record -e cpu-clock -F 499 --call-graph dwarf -p "$fp" -o "$work/follower.data" -- sleep "$seconds" 2>"$work/perf-f.log" &
pf=$!
wait "$pl" "$pf"
wait "$loadpid"
loadpid=
cat "$work/load.txt"
ops=$(awk 'NR == 2 { print $6 }' "$work/load.txt")
for who in leader follower; do
    perf script -i "$work/$who.data" 2>/dev/null | inferno-collapse-perf >"$work/$who.folded"
    inferno-flamegraph --title "corral ensemble of 3, setData 1 KiB over all servers, ${ops} ops/s: the $who; servers on core 0, cpu-clock ${seconds} s" \
        "$work/$who.folded" >"flamegraphs/ensemble-a-$who.svg"
    cp "$work/$who.folded" "$base/ensemble-a-$who.folded"
    echo "wrote flamegraphs/ensemble-a-$who.svg ($(wc -l <"$work/$who.folded") distinct stacks)"
done
