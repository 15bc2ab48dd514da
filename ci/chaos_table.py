#!/usr/bin/env python3
"""Tables for docs/reliability.md from chaos summaries (one JSON object per line, as
ci/chaos-campaign.sh appends them): per system, the runs, operations checked and anomalies;
per system and fault kind, the faults and the time from heal to a re-formed ensemble."""
import json
import sys
from collections import defaultdict


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    systems = sorted({r["system"] for r in runs}, key=["corral", "mixed", "zookeeper"].index)
    print("| system | runs | faults | load min | register ops (unknown) | sequential acked | "
          "sessions (ephemerals checked) | watch windows (events) | lock acquisitions (confirmed) "
          "| anomalies |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        rs = [r for r in runs if r["system"] == s]
        ops = sum(r["reads"] + r["writes"] + r["cas_ok"] + r["cas_failed"] + r["unknown"] for r in rs)
        unknown = sum(r["unknown"] for r in rs)
        minutes = sum(r.get("load_seconds", 0) for r in rs) / 60
        sessions = sum(r.get("sessions_ended", 0) for r in rs)
        checked = sum(r.get("ephemerals_checked_live", 0) for r in rs)
        anomalies = sum(len(r["anomalies"]) for r in rs)
        windows = sum(r.get("watch_windows", 0) for r in rs)
        events = sum(r.get("watch_events", 0) for r in rs)
        locks = sum(r.get("lock_acquired", 0) for r in rs)
        held = sum(r.get("lock_holds_confirmed", 0) for r in rs)
        lock_cell = f"{locks:,} ({held:,})" if any("lock_acquired" in r for r in rs) else "-"
        print(f"| {s} | {len(rs)} | {sum(r['faults'] for r in rs)} | {minutes:.0f} | "
              f"{ops:,} ({unknown:,}) | {sum(r['sequential_acked'] for r in rs):,} | "
              f"{sessions:,} ({checked:,}) | {windows:,} ({events:,}) | {lock_cell} | {anomalies} |")
    print()
    kinds = sorted({k for r in runs for k in r["fault_kinds"]})
    print("From the heal until the ensemble re-formed (every server serving, one leader), ms: "
          "median / max over the faults of that kind (count); servers that exited by themselves "
          "during the fault in brackets:")
    print()
    print("| fault | " + " | ".join(systems) + " |")
    print("|---|" + "---|" * len(systems))
    for k in kinds:
        cells = []
        for s in systems:
            fk = [r["fault_kinds"][k] for r in runs if r["system"] == s and k in r["fault_kinds"]]
            if not fk:
                cells.append("–")
                continue
            if all("reformed_ms" in f for f in fk):
                ms = sorted(m for f in fk for m in f["reformed_ms"])
            else:  # older summaries: each run's median and max only
                ms = sorted(m for f in fk for m in (f["reformed_ms_median"], f["reformed_ms_max"])
                            if m is not None)
            n = sum(f["count"] for f in fk)
            exits = sum(f["server_exits"] for f in fk)
            med = ms[(len(ms) - 1) // 2] if ms else None
            cell = f"{med} / {ms[-1] if ms else None} ({n}×)"
            if exits:
                cell += f" [{exits}]"
            cells.append(cell)
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
