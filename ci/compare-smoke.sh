#!/usr/bin/env bash
# A short `corral-bench compare` against Apache ZooKeeper 3.8 (one server each, then three each):
# proves the comparison tool still
# works end to end (both servers start on loopback, every workload runs against both, the
# JSON holds both systems' figures and the ratios). The figures of so short a run mean nothing;
# docs/performance.md has the real ones and the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral-server -p corral-bench
dir=target/compare-smoke
rm -rf "$dir"
mkdir -p "$dir"
timeout 900 target/release/corral-bench compare --workloads a,b,c,d,e,f,g --seconds 1 --warmup 1 \
    --znodes 20000 --snap-count 10000 --watchers 50 --fanout-reps 1 --port 22281 \
    --dir "$dir/data" --json >"$dir/out.jsonl"
python3 - "$dir/out.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seen = [r["workload"] for r in rows]
want = ["a", "b", "c", "d90", "d50", "e", "f", "g"]
assert seen == want, f"workloads {seen}, expected {want}"
for r in rows:
    assert set(r["systems"]) == {"corral", "zookeeper"}, (r["workload"], r["systems"].keys())
    assert not r["errors"], (r["workload"], r["errors"])
    for system, figures in r["systems"].items():
        bad = {k: v for k, v in figures.items() if not isinstance(v, (int, float)) or v < 0}
        assert not bad, (r["workload"], system, bad)
    assert r["ratio"], r["workload"]
load = {r["workload"]: r for r in rows}
for w in ["a", "b", "c"]:
    for system in ["corral", "zookeeper"]:
        assert load[w]["systems"][system]["ops_per_sec"] > 0, (w, system)
assert load["f"]["systems"]["corral"]["znodes"] >= 20000
print(f"compare smoke: {len(rows)} workloads, both systems, figures and ratios present")
PY

# The same for three servers of each (`compare --ensemble`): every workload and the failover
# measured for both systems.
timeout 900 target/release/corral-bench compare --ensemble --seconds 1 --warmup 1 --port 22281 \
    --dir "$dir/data" --jsonl "$dir/ensemble.jsonl" >"$dir/ensemble.txt"
python3 - "$dir/ensemble.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fig = {(r["system"], r["workload"], r["figure"]): r["value"] for r in rows}
for system in ["corral", "zookeeper"]:
    for w in ["a", "b", "c"]:
        assert fig.get((system, w, "ops_per_sec"), 0) > 0, (system, w)
        assert fig.get((system, w, "errors")) == 0, (system, w, fig.get((system, w, "errors")))
    assert fig.get((system, "failover", "ms"), 0) > 0, (system, "failover")
print(f"ensemble compare smoke: {len(rows)} figures, both systems, failover measured")
PY
