#!/usr/bin/env bash
# Profiles a standalone corral under one of `corral-bench compare`'s load workloads and writes
# flamegraphs/<workload>.svg.
#
#   flamegraphs/profile.sh <a|b|c|d90|d50> [seconds]
#   flamegraphs/profile.sh f                    (restart with 1M znodes: writes f-restart.svg)
#
# The server runs pinned to core 0 (same zoo.cfg as compare: fsync on, snapCount 100000) in a
# fresh data directory under $PROFILE_DIR (default ./corral-bench-data); `corral-bench load`
# (8 sessions × 64 outstanding) runs pinned to core 1; after the setup and a warm-up,
# `perf record -e cpu-clock` samples the server for [seconds] (default 15). Stacks are unwound
# with DWARF (Rust's std is built without frame pointers); set CALLGRAPH=fp to use -g instead.
# For f, `corral-bench compare --workloads f --skip-zookeeper` loads $ZNODES (default 1,000,000)
# znodes of 100 B and leaves the data directory; the script then records corral's whole
# restart, from exec until it has answered `ruok` (it listens only once recovery is done) and
# then a getData on a new session.
# The SVG is rendered with the inferno crate (installed with `cargo install inferno` if missing).
# Only the server this script starts is signalled, by its PID; only 127.0.0.1 is used.
set -euo pipefail

workload=${1:?usage: flamegraphs/profile.sh <a|b|c|d90|d50|f> [seconds]}
seconds=${2:-15}
case $seconds in '' | *[!0-9]*) echo "seconds must be a whole number" >&2; exit 2 ;; esac
if ((seconds < 1 || seconds > 300)); then echo "seconds must be in 1..300" >&2; exit 2; fi

case $workload in
a) load=(--op set --value-bytes 1024); title="setData 1 KiB" ;;
b) load=(--op create --value-bytes 100); title="create 100 B" ;;
c) load=(--op get --value-bytes 1024); title="getData 1 KiB" ;;
d90) load=(--op mixed --read-pct 90 --value-bytes 1024); title="90% getData / 10% setData 1 KiB" ;;
d50) load=(--op mixed --read-pct 50 --value-bytes 1024); title="50% getData / 50% setData 1 KiB" ;;
f) load=(); title="restart with ${ZNODES:-1000000} znodes of 100 B" ;;
*) echo "unknown workload $workload (a, b, c, d90, d50, f)" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
port=${PROFILE_PORT:-22191}
warmup=4
callgraph=${CALLGRAPH:-dwarf}

cargo build --release -p corral-server -p corral-bench
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    cargo install inferno --locked
fi
export PATH="$HOME/.cargo/bin:$PATH"

base=${PROFILE_DIR:-$repo/corral-bench-data}
mkdir -p "$base"
work=$(mktemp -d "$base/profile-$workload.XXXXXX")
server=
loadpid=
perfpid=
stop_server() {
    if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$server" 2>/dev/null; then kill -KILL "$server" 2>/dev/null || true; fi
    fi
}
cleanup() {
    if [[ -n $loadpid ]] && kill -0 "$loadpid" 2>/dev/null; then kill "$loadpid" 2>/dev/null || true; fi
    # Under perf the server is perf's child (taskset execs it): found by its parent's PID.
    if [[ -z $server && -n $perfpid ]]; then server=$(pgrep -P "$perfpid" | head -1 || true); fi
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT
if [[ $workload == f ]]; then
    "$target/release/corral-bench" compare --workloads f --skip-zookeeper --keep-data \
        --znodes "${ZNODES:-1000000}" --dir "$work" --port "$((port - 1))" \
        --corral-bin "$target/release/corral" | sed -n '/(f)/,$p'
    home=$work/corral-bench-corral
    if [[ $callgraph == fp ]]; then cg=(-g); else cg=(--call-graph "$callgraph"); fi
    perf record -e cpu-clock -F 999 "${cg[@]}" -o "$work/perf.data" -- \
        env RUST_LOG=warn taskset -c 0 "$target/release/corral" "$home/zoo.cfg" \
        >"$work/server.log" 2>"$work/perf.log" &
    perfpid=$!
    t0=$(date +%s.%N)
    for _ in $(seq 1 6000); do
        if [[ $(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && cat <&3) == imok ]] 2>/dev/null; then
            break
        fi
        kill -0 "$perfpid" 2>/dev/null || { cat "$work/server.log" "$work/perf.log" >&2; exit 1; }
        sleep 0.02
    done
    t1=$(date +%s.%N)
    # Then until a session is open and a getData is answered (the key need not exist).
    for _ in $(seq 1 300); do
        if "$target/release/corral-bench" load --server "127.0.0.1:$port" --sessions 1 --outstanding 1 \
            --op get --keyspace 1 --root /app --no-setup --warmup 0 --seconds 0.01 >/dev/null 2>&1; then
            break
        fi
        kill -0 "$perfpid" 2>/dev/null || { cat "$work/server.log" "$work/perf.log" >&2; exit 1; }
        sleep 0.02
    done
    t2=$(date +%s.%N)
    # The server is perf's child (taskset execs it): signal that process, by its PID.
    server=$(pgrep -P "$perfpid" | head -1 || true)
    stop_server
    wait "$perfpid" || true
    perfpid=
    elapsed=$(echo "$t1 - $t0" | bc)
    first_read=$(echo "$t2 - $t0" | bc)
    perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
    inferno-flamegraph --title "corral, restart with ${ZNODES:-1000000} znodes of 100 B: exec to ruok ${elapsed} s, to a served getData ${first_read} s; core 0, cpu-clock" \
        "$work/folded" >"flamegraphs/f-restart.svg"
    cp "$work/folded" "$base/f-restart.folded"
    echo "restart to ruok: ${elapsed} s; to a served getData: ${first_read} s"
    echo "wrote flamegraphs/f-restart.svg ($(wc -l <"$work/folded") distinct stacks; folded stacks in $base/f-restart.folded)"
    exit 0
fi

mkdir -p "$work/data"
cat >"$work/zoo.cfg" <<EOF
tickTime=2000
dataDir=$work/data
clientPort=$port
clientPortAddress=127.0.0.1
snapCount=100000
forceSync=yes
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
EOF

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "something already listens on 127.0.0.1:$port" >&2
    exit 1
fi

RUST_LOG=warn taskset -c 0 "$target/release/corral" "$work/zoo.cfg" >"$work/server.log" 2>&1 &
server=$!

ready=
for _ in $(seq 1 300); do
    if [[ $(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && cat <&3) == imok ]] 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $ready ]] || { echo "corral did not answer ruok" >&2; exit 1; }

# The load runs past the recording on both sides: setup and warm-up before, a margin after.
taskset -c 1 "$target/release/corral-bench" load --server "127.0.0.1:$port" \
    --sessions 8 --outstanding 64 "${load[@]}" --warmup "$warmup" --seconds "$((seconds + 3))" \
    >"$work/load.txt" &
loadpid=$!
sleep "$((warmup + 2))"
if [[ $callgraph == fp ]]; then cg=(-g); else cg=(--call-graph "$callgraph"); fi
perf record -e cpu-clock -F 499 "${cg[@]}" -p "$server" -o "$work/perf.data" -- sleep "$seconds" 2>"$work/perf.log"
wait "$loadpid"
loadpid=
cat "$work/load.txt"

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
ops=$(awk 'NR == 2 { print $6 }' "$work/load.txt")
inferno-flamegraph --title "corral, ($workload) $title, 8 sessions x 64 outstanding, ${ops} ops/s; server on core 0, cpu-clock ${seconds} s" \
    "$work/folded" >"flamegraphs/$workload.svg"
cp "$work/folded" "$base/$workload.folded"
echo "wrote flamegraphs/$workload.svg ($(wc -l <"$work/folded") distinct stacks; folded stacks in $base/$workload.folded)"
