"""Medians of the interleaved plaintext and TLS compare runs (docs/performance.md, "Clients over TLS"). Run from the repository root."""
import json, statistics, collections
def load(p):
    d = collections.defaultdict(lambda: collections.defaultdict(list))
    for line in open(p):
        o = json.loads(line)
        w = o.get("workload") or o.get("key")
        for sysname, runs in o["runs"].items():
            for r in runs:
                for k in ("ops_per_sec", "cpu_s_per_100k_ops", "p99_us"):
                    d[(w, sysname)][k].append(r[k])
    return d
plain, tls = load("docs/results/tls-compare-plain.jsonl"), load("docs/results/tls-compare-tls.jsonl")
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("workload system  plain ops/s   tls ops/s   tls/plain  plain cpu/100k  tls cpu/100k  plain p99  tls p99   (n plain, n tls)")
for key in sorted(plain):
    p, t = plain[key], tls.get(key, {})
    po, to = med(p["ops_per_sec"]), med(t.get("ops_per_sec", []))
    print(f"{key[0]:8} {key[1]:9} {po:11.0f} {to:11.0f} {to/po:9.2f} {med(p['cpu_s_per_100k_ops']):14.3f} {med(t.get('cpu_s_per_100k_ops',[])):13.3f} {med(p['p99_us']):9.0f} {med(t.get('p99_us',[])):8.0f}   ({len(p['ops_per_sec'])}, {len(t.get('ops_per_sec',[]))})")
for w in sorted({k[0] for k in tls}):
    c, z = med(tls[(w,'corral')]['ops_per_sec']), med(tls[(w,'zookeeper')]['ops_per_sec'])
    print(f"TLS {w}: corral/zookeeper throughput {c/z:.2f}")
