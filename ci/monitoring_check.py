#!/usr/bin/env python3
"""Checks a Grafana dashboard against a live Prometheus (standard library only).

    monitoring_check.py DASHBOARD --prometheus URL [--targets N] [--wait SECS]
    monitoring_check.py DASHBOARD --static
    monitoring_check.py DASHBOARD --prometheus URL --wait-only [--targets N]
    monitoring_check.py --self-test DASHBOARD [--prometheus URL]

1. The JSON is a loadable dashboard: valid JSON, a `panels` list, every panel with `id`
   (unique, rows' nested panels included), `type`, `title` and `gridPos` (inside the 24-column
   grid, no two panels overlapping); every panel but a row has `targets`, each with an `expr`
   and a `refId` (unique in its panel); every datasource reference, panel, target or variable,
   is a datasource variable of type prometheus (`${DS_PROMETHEUS}`), never a fixed uid.
2. Against Prometheus: waits until every scrape target is up (and --targets of them, if given)
   and scraped three times within the rate window; then runs every `label_values()` variable
   query and every `expr` through /api/v1/query, Grafana's variables replaced as Grafana
   replaces them with "All" selected (`$__rate_interval` by --rate-interval; a template
   variable by its allValue, or else by the values its query found, `(a|b)`). A query fails
   if Prometheus refuses it, if it returns nothing, if it returns only NaN, or if it names a
   metric no target exports (which `or vector(0)` would otherwise hide).

Exit status 0 when everything passes, 1 with the failures listed, 2 on bad usage.

--self-test feeds the checker dashboards it must reject (a target without `expr`, a duplicate
panel id, a query of a metric that does not exist, ...) and asserts each is rejected for the
reason expected, and that the dashboard given and a minimal good one are accepted. With
--prometheus the query checks are tested too (a Prometheus that scrapes `znode_count`).
"""

import argparse
import copy
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

GRID_COLUMNS = 24
PANEL_TYPES = {
    "timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "piechart",
    "state-timeline", "status-history", "histogram", "text", "row",
}
NO_TARGETS = {"row", "text"}

# Words that are PromQL, not metric names (functions are recognised by the "(" after them).
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "start", "end",
}


class Failure(Exception):
    pass


# --- the dashboard's JSON -----------------------------------------------------------------

def datasource_variables(dash):
    """Names of the dashboard's datasource variables of type prometheus."""
    names = set()
    templating = dash.get("templating") if isinstance(dash, dict) else None
    for v in (templating or {}).get("list") or []:
        if isinstance(v, dict) and v.get("type") == "datasource" and v.get("query") == "prometheus":
            names.add(v.get("name"))
    return names


def datasource_error(ref, ds_vars, where):
    """None if `ref` points at a prometheus datasource variable, else why not."""
    if isinstance(ref, dict):
        uid = ref.get("uid")
        kind = ref.get("type")
        if kind not in (None, "prometheus"):
            return f"{where}: datasource type {kind!r}, not prometheus"
    else:
        uid = ref
    m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid) if isinstance(uid, str) else None
    if not m:
        return (f"{where}: datasource {json.dumps(ref)} is not a datasource variable "
                f"(expected uid ${{{sorted(ds_vars)[0] if ds_vars else 'DS_PROMETHEUS'}}})")
    name = m.group(1) or m.group(2)
    if name not in ds_vars:
        return f"{where}: datasource variable ${name} is not a prometheus datasource variable"
    return None


def static_errors(dash):
    """Errors in the dashboard's structure, and the queries it holds.

    Returns (errors, queries, variable_queries); a query is (where, expr), a variable query
    (where, name, selector, label, allValue) from label_values(selector, label), in the
    dashboard's order (a variable's selector may use the variables before it)."""
    errors = []
    queries = []
    var_queries = []
    if not isinstance(dash, dict):
        return ["the dashboard is not a JSON object"], [], []
    if not isinstance(dash.get("title"), str) or not dash["title"].strip():
        errors.append("dashboard: no title")
    if not isinstance(dash.get("schemaVersion"), int):
        errors.append("dashboard: no integer schemaVersion")
    panels = dash.get("panels")
    if not isinstance(panels, list) or not panels:
        return errors + ["dashboard: `panels` is not a non-empty list"], [], []
    ds_vars = datasource_variables(dash)
    if not ds_vars:
        errors.append("dashboard: no datasource variable of type prometheus in templating.list")
    templating = dash.get("templating") or {}
    if not isinstance(templating, dict) or not isinstance(templating.get("list", []), list):
        errors.append("dashboard: templating.list is not a list")
        templating = {}
    for v in templating.get("list") or []:
        if not isinstance(v, dict) or not v.get("name") or not v.get("type"):
            errors.append(f"variable {v!r}: no name or type")
            continue
        if v["type"] != "query":
            continue
        where = f"variable ${v['name']}"
        e = datasource_error(v.get("datasource"), ds_vars, where)
        if e:
            errors.append(e)
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
        if m:
            var_queries.append((where, v["name"], m.group(1), m.group(2), v.get("allValue")))
        else:
            errors.append(f"{where}: query {q!r} is not label_values(selector, label)")

    ids = {}
    placed = []

    def check_panel(p, where_prefix, top_level):
        if not isinstance(p, dict):
            errors.append(f"{where_prefix}: not an object")
            return
        pid = p.get("id")
        title = p.get("title")
        where = f"panel {pid} {title!r}" if pid is not None else f"{where_prefix} {title!r}"
        if not isinstance(pid, int) or isinstance(pid, bool):
            errors.append(f"{where}: no integer id")
        elif pid in ids:
            errors.append(f"{where}: duplicate panel id {pid} (also {ids[pid]!r})")
        else:
            ids[pid] = title
        ptype = p.get("type")
        if not isinstance(ptype, str) or not ptype:
            errors.append(f"{where}: no type")
        elif ptype not in PANEL_TYPES:
            errors.append(f"{where}: unknown panel type {ptype!r}")
        if not isinstance(title, str) or not title.strip():
            errors.append(f"{where}: no title")
        g = p.get("gridPos")
        if not isinstance(g, dict) or not all(
                isinstance(g.get(k), int) and not isinstance(g.get(k), bool) for k in "hwxy"):
            errors.append(f"{where}: no gridPos with integer h, w, x, y")
        elif g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > GRID_COLUMNS:
            errors.append(f"{where}: gridPos {g} outside the {GRID_COLUMNS}-column grid")
        elif top_level:
            for other_where, o in placed:
                if (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                        and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]):
                    errors.append(f"{where}: gridPos overlaps {other_where}")
            placed.append((where, g))
        if ptype == "row":
            for i, sub in enumerate(p.get("panels") or []):
                check_panel(sub, f"{where} panels[{i}]", False)
        if ptype in NO_TARGETS:
            return
        if "datasource" not in p:
            errors.append(f"{where}: no datasource")
        else:
            e = datasource_error(p["datasource"], ds_vars, where)
            if e:
                errors.append(e)
        targets = p.get("targets")
        if not isinstance(targets, list) or not targets:
            errors.append(f"{where}: no targets")
            return
        refs = set()
        for i, t in enumerate(targets):
            tw = f"{where} target {i}"
            if not isinstance(t, dict):
                errors.append(f"{tw}: not an object")
                continue
            ref = t.get("refId")
            if not isinstance(ref, str) or not ref:
                errors.append(f"{tw}: no refId")
            elif ref in refs:
                errors.append(f"{tw}: duplicate refId {ref!r}")
            else:
                refs.add(ref)
                tw = f"{where} {ref}"
            if "datasource" in t:
                e = datasource_error(t["datasource"], ds_vars, tw)
                if e:
                    errors.append(e)
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"{tw}: no expr")
            else:
                queries.append((tw, expr))

    for i, p in enumerate(panels):
        check_panel(p, f"panels[{i}]", True)
    return errors, queries, var_queries


def expand(expr, var_values, rate_interval):
    """`expr` with Grafana's variables replaced as a query over every instance would have them."""
    builtins = {
        "__rate_interval": rate_interval, "__interval": rate_interval, "__range": rate_interval,
        "__interval_ms": "1000", "__range_s": "60",
    }

    def sub(m):
        name = m.group(1) or m.group(2)
        if name in builtins:
            return builtins[name]
        if name in var_values:
            return var_values[name]
        raise Failure(f"unknown variable ${name}")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


def metric_names(expr):
    """The metric names an (expanded) PromQL expression selects."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\S", s)
    names = set()
    for i, tok in enumerate(tokens):
        if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tok) or tok.lower() in PROMQL_WORDS:
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "(":
            continue  # a function or an aggregation
        names.add(tok)
    return names


# --- Prometheus ---------------------------------------------------------------------------

def api(prom, path, params=None, timeout=10):
    url = prom.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            raise Failure(f"HTTP {e.code} from {path}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Failure(f"{path}: {e}") from None
    if body.get("status") != "success":
        raise Failure(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    return body["data"]


def wait_for_targets(prom, expect, wait, rate_interval):
    """Waits until every active target is up (and `expect` of them) and has samples enough for
    rate() over `rate_interval`. Returns the targets."""
    deadline = time.monotonic() + wait
    last = "no answer"
    while True:
        try:
            targets = api(prom, "/api/v1/targets", {"state": "active"})["activeTargets"]
            up = [t for t in targets if t.get("health") == "up"]
            last = ", ".join(f"{t['labels'].get('instance')}={t.get('health')}"
                             f"{' (' + t['lastError'] + ')' if t.get('lastError') else ''}"
                             for t in targets) or "no targets"
            if targets and len(up) == len(targets) and (expect is None or len(up) == expect):
                r = api(prom, "/api/v1/query",
                        {"query": f"min(count_over_time(up[{rate_interval}]))"})
                if r["result"] and float(r["result"][0]["value"][1]) >= 3:
                    return targets
                last += "; waiting for three scrapes in the rate window"
        except Failure as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise Failure(f"targets not all up after {wait}s: {last}")
        time.sleep(0.5)


def regex_escape(value):
    """A label value in a PromQL regex string, as Grafana escapes a multi-value variable's."""
    return re.sub(r"[\\^$*+?.()|{}\[\]]", lambda m: "\\\\" + m.group(0), value)


def query_errors(prom, queries, var_queries, rate_interval, exported):
    """Runs the variables' queries, then the panels'; returns (errors, lines describing each).

    A variable becomes what Grafana sends when "All" is selected: its allValue, or else the
    values its query found, as a regex alternation."""
    errors = []
    lines = []
    var_values = {}
    work = [(w, f"count by ({label}) ({sel})", (name, label, all_value))
            for w, name, sel, label, all_value in var_queries]
    work += [(w, e, None) for w, e in queries]
    for where, expr, var in work:
        if var:
            name, label, all_value = var
            var_values[name] = all_value or ".*"  # until its query has answered
        try:
            q = expand(expr, var_values, rate_interval)
        except Failure as e:
            errors.append(f"{where}: {e}: {expr}")
            continue
        missing = sorted(n for n in metric_names(q) if n not in exported)
        if missing:
            errors.append(f"{where}: names metrics no target exports {missing}: {expr}")
        try:
            data = api(prom, "/api/v1/query", {"query": q})
        except Failure as e:
            errors.append(f"{where}: Prometheus refused the query ({e}): {q}")
            continue
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            values = [result[1]]
        elif kind == "vector":
            values = [s["value"][1] for s in result]
        else:
            errors.append(f"{where}: result type {kind}, not an instant vector: {q}")
            continue
        if not values:
            errors.append(f"{where}: empty result: {q}")
            continue
        if var and not all_value:
            found = sorted(s["metric"].get(label, "") for s in result)
            var_values[name] = "(" + "|".join(regex_escape(v) for v in found) + ")"
        numbers = [float(v) for v in values]
        if all(math.isnan(v) for v in numbers):
            errors.append(f"{where}: only NaN ({len(values)} series): {q}")
            continue
        real = [v for v in numbers if not math.isnan(v)]
        nan = f", {len(numbers) - len(real)} NaN" if len(real) < len(numbers) else ""
        lines.append(f"{len(values):3d} series{nan}, max {max(real):.6g}  {where}: {q}")
    return errors, lines


def exported_names(prom):
    return set(api(prom, "/api/v1/label/__name__/values"))


def check(text, prom=None, rate_interval="15s", exported=None):
    """Every error `text` (a dashboard's JSON) has; with `prom`, the query checks too.
    Returns (errors, number of queries, lines)."""
    try:
        dash = json.loads(text)
    except ValueError as e:
        return [f"not valid JSON: {e}"], 0, []
    errors, queries, var_queries = static_errors(dash)
    if errors or prom is None:
        return errors, len(queries) + len(var_queries), []
    if exported is None:
        exported = exported_names(prom)
    qerr, lines = query_errors(prom, queries, var_queries, rate_interval, exported)
    return qerr, len(queries) + len(var_queries), lines


# --- self-test ----------------------------------------------------------------------------

def first_query_panel(dash):
    return next(p for p in dash["panels"] if p.get("type") not in NO_TARGETS)


def self_test(dashboard_path, prom, rate_interval):
    with open(dashboard_path) as f:
        base = json.load(f)
    ds = copy.deepcopy(first_query_panel(base)["datasource"])
    ds_var = next(v for v in base["templating"]["list"] if v.get("type") == "datasource")

    def minimal(expr):
        return {
            "title": "self-test", "schemaVersion": 38,
            "templating": {"list": [copy.deepcopy(ds_var)]},
            "panels": [{"id": 1, "type": "timeseries", "title": "q", "datasource": ds,
                        "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                        "targets": [{"refId": "A", "expr": expr, "datasource": ds}]}],
        }

    def mutate(f):
        d = copy.deepcopy(base)
        f(d)
        return d

    def panels_of(d):
        ps = [p for p in d["panels"] if p.get("type") not in NO_TARGETS]
        return [ps[i % len(ps)] for i in range(16)]

    def set_(obj, key, value):
        obj[key] = value

    def drop(obj, key):
        del obj[key]

    # (name, dashboard or raw text, what a rejection must say; None: must be accepted)
    static_cases = [
        ("the dashboard as shipped", base, None),
        ("a minimal good dashboard", minimal("znode_count"), None),
        ("not JSON", '{"panels": [', "not valid JSON"),
        ("panels not a list", mutate(lambda d: set_(d, "panels", {})), "`panels` is not"),
        ("a target without expr",
         mutate(lambda d: drop(panels_of(d)[0]["targets"][0], "expr")), "no expr"),
        ("an empty expr",
         mutate(lambda d: set_(panels_of(d)[1]["targets"][0], "expr", "  ")), "no expr"),
        ("a target without refId",
         mutate(lambda d: drop(panels_of(d)[2]["targets"][0], "refId")), "no refId"),
        ("a duplicate panel id",
         mutate(lambda d: set_(panels_of(d)[3], "id", panels_of(d)[4]["id"])),
         "duplicate panel id"),
        ("a panel without gridPos",
         mutate(lambda d: drop(panels_of(d)[5], "gridPos")), "no gridPos"),
        ("overlapping panels",
         mutate(lambda d: set_(panels_of(d)[7], "gridPos", dict(panels_of(d)[6]["gridPos"]))),
         "overlaps"),
        ("a panel without type", mutate(lambda d: drop(panels_of(d)[8], "type")), "no type"),
        ("a panel without title", mutate(lambda d: drop(panels_of(d)[9], "title")), "no title"),
        ("a panel without targets",
         mutate(lambda d: set_(panels_of(d)[10], "targets", [])), "no targets"),
        ("a fixed datasource uid",
         mutate(lambda d: set_(panels_of(d)[11], "datasource",
                               {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})),
         "not a datasource variable"),
        ("a target's fixed datasource",
         mutate(lambda d: set_(panels_of(d)[12]["targets"][0], "datasource", "Prometheus")),
         "not a datasource variable"),
        ("no datasource variable",
         mutate(lambda d: set_(d, "templating", {"list": []})), "no datasource variable"),
    ]
    query_cases = [
        ("a good query", minimal("znode_count"), None),
        ("a metric that does not exist", minimal("corral_no_such_metric"), "empty result"),
        ("a missing metric hidden by or vector(1)",
         minimal("corral_no_such_metric or vector(1)"), "no target exports"),
        ("a PromQL syntax error", minimal("rate(znode_count[1m]"), "refused"),
        ("a range vector", minimal("znode_count[1m]"), "not an instant vector"),
        ("only NaN", minimal("znode_count * NaN"), "only NaN"),
        ("an unknown variable", minimal('znode_count{instance=~"$nosuch"}'), "unknown variable"),
        ("an empty selection", minimal('znode_count{instance="nowhere:1"}'), "empty result"),
    ]
    failures = []
    ran = 0
    exported = None
    if prom:
        wait_for_targets(prom, None, 30, rate_interval)
        exported = exported_names(prom)
    for with_prom, cases in ((False, static_cases), (True, query_cases)):
        if with_prom and not prom:
            print(f"self-test: {len(cases)} query cases skipped (no --prometheus)")
            continue
        for name, dash, reason in cases:
            text = dash if isinstance(dash, str) else json.dumps(dash)
            errors, _, _ = check(text, prom if with_prom else None, rate_interval=rate_interval,
                                 exported=exported)
            ran += 1
            if reason is None and errors:
                failures.append(f"{name}: rejected, must be accepted: {errors}")
            elif reason is not None and not errors:
                failures.append(f"{name}: accepted, must be rejected ({reason})")
            elif reason is not None and not any(reason in e for e in errors):
                failures.append(f"{name}: rejected for another reason than {reason!r}: {errors}")
            else:
                verdict = "accepted" if reason is None else f"rejected: {errors[0]}"
                print(f"self-test ok: {name}: {verdict[:150]}")
    if failures:
        print("self-test FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"self-test passed: {ran} cases")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboard")
    ap.add_argument("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--static", action="store_true", help="only the JSON checks")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--targets", type=int, help="how many scrape targets must be up")
    ap.add_argument("--wait", type=float, default=30, help="seconds to wait for the targets")
    ap.add_argument("--rate-interval", default="15s",
                    help="what $__rate_interval and $__interval become (default 15s)")
    ap.add_argument("--wait-only", action="store_true",
                    help="only wait until the targets are up and scraped, then exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every query")
    args = ap.parse_args()
    if args.wait_only:
        if not args.prometheus:
            ap.error("--wait-only needs --prometheus URL")
        try:
            targets = wait_for_targets(args.prometheus, args.targets, args.wait, args.rate_interval)
        except Failure as e:
            print(f"FAILED: {e}")
            return 1
        print(f"{len(targets)} targets up")
        return 0
    if args.self_test:
        try:
            return self_test(args.dashboard, args.prometheus, args.rate_interval)
        except Failure as e:
            print(f"self-test FAILED: {e}")
            return 1
    if not args.static and not args.prometheus:
        ap.error("--prometheus URL is needed (or --static)")
    try:
        with open(args.dashboard) as f:
            text = f.read()
    except OSError as e:
        print(f"FAILED: {e}")
        return 1
    errors, n, _ = check(text)
    if errors:
        print(f"FAILED: {args.dashboard} is not a loadable dashboard:\n  " + "\n  ".join(errors))
        return 1
    if args.static:
        print(f"{args.dashboard}: a loadable dashboard, {n} queries")
        return 0
    try:
        targets = wait_for_targets(args.prometheus, args.targets, args.wait, args.rate_interval)
        errors, n, lines = check(text, args.prometheus, rate_interval=args.rate_interval)
    except Failure as e:
        print(f"FAILED: {e}")
        return 1
    print(f"targets up: {len(targets)}: " + ", ".join(
        sorted(f"{t['labels'].get('job')}/{t['labels'].get('instance')}" for t in targets)))
    if args.verbose:
        print("\n".join(lines))
    if errors:
        print(f"FAILED: {len(errors)} of {n} queries:\n  " + "\n  ".join(errors))
        return 1
    series = sum(int(line.split()[0]) for line in lines)
    print(f"all {n} queries of {args.dashboard} returned data ({series} series)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
