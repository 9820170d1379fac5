#!/usr/bin/env python3
"""Checks that every metric name the alert rules and the Grafana dashboard
use is exported by the running binaries.

    names.py RULES.yml DASHBOARD.json SCRAPE...
    names.py --dashboard-as-rules DASHBOARD.json OUT.yml

A scrape is the text of one /metrics. A name counts as exported when the
scrapes have at least one sample of it (a `# TYPE` line with no sample is
not enough); `x_bucket`, `x_sum` and `x_count` count for `x` only when the
scrapes declare `x` a histogram. `up` is made by Prometheus itself.
Prints one line per missing name, naming the file and the rule or panel,
and exits 1 if there is any.
"""
import json
import re
import sys

import yaml

SYNTHETIC = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by",
            "without", "on", "ignoring", "group_left", "group_right", "atan2"}
SUFFIXES = ("_bucket", "_sum", "_count")


def expr_names(expr):
    """Metric names in a PromQL expression (or a Grafana label_values query)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    m = re.fullmatch(r"\s*label_values\(\s*(?:([^,]+?)\s*,)?\s*\w+\s*\)\s*", e)
    if m:                                                  # Grafana variable query
        e = m.group(1) or ""
    e = re.sub(r"\{[^}]*\}", "", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                       # ranges, $__rate_interval
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\boffset\s+\S+", "", e)
    e = re.sub(r"\$\w+", "", e)                            # other Grafana variables
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][-+]?\d+)?", "", e)  # numbers
    out = set()
    for t in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[t.end():].lstrip()
        if rest.startswith("("):                           # function, aggregation
            continue
        if t.group().lower() in KEYWORDS:
            continue
        out.add(t.group())
    return out


def scraped(paths):
    """(names of sample lines, {family: type} from the `# TYPE` lines)."""
    samples, types = set(), {}
    for p in paths:
        for line in open(p, encoding="utf-8"):
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()[:4]
                types[name] = kind
            elif line.strip() and not line.startswith("#"):
                samples.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group())
    return samples, types


def exported(name, samples, types):
    """A query may use a plain family that has samples, or a histogram's
    (summary's) `_bucket`/`_sum`/`_count` series, never the bare name of a
    histogram."""
    if name in SYNTHETIC:
        return True
    if types.get(name) in ("histogram", "summary"):
        return False
    for s in SUFFIXES:
        base = name[: -len(s)]
        if name.endswith(s) and types.get(base) in ("histogram", "summary"):
            return name in samples
    return name in samples


def check_dashboard(path, dash):
    """What makes the dashboard importable and portable: a `datasource`
    variable every panel and target uses, `feed` and `instance` variables,
    unique panel ids. Returns the number of problems (printed)."""
    bad = []
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        bad.append("no variable `datasource` of type datasource")
    for v in ("feed", "instance"):
        if v not in variables:
            bad.append(f"no variable `{v}`")
    ids = []
    want = {"type": "prometheus", "uid": "${datasource}"}

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                if p.get("datasource") != want:
                    bad.append(f"panel {p.get('title')!r}: datasource is not ${{datasource}}")
                for t in p.get("targets", []):
                    if t.get("datasource") != want:
                        bad.append(f"panel {p.get('title')!r} target {t.get('refId')}: datasource is not ${{datasource}}")
                if not p.get("targets"):
                    bad.append(f"panel {p.get('title')!r}: no query")
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)) or None in ids:
        bad.append("panel ids missing or not unique")
    for b in bad:
        print(f"DASHBOARD {path}: {b}")
    return len(bad)


def main():
    rules_path, dash_path, *scrapes = sys.argv[1:]
    samples, types = scraped(scrapes)
    uses = []  # (where, expr)
    for g in yaml.safe_load(open(rules_path, encoding="utf-8"))["groups"]:
        for r in g["rules"]:
            what = r.get("alert") or r.get("record")
            uses.append((f"{rules_path}: group {g['name']}, rule {what}", r["expr"]))
    dash = json.load(open(dash_path, encoding="utf-8"))

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                uses.append((f"{dash_path}: panel {p.get('title')!r} (id {p.get('id')}), "
                             f"target {t.get('refId')}", t.get("expr", "")))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            uses.append((f"{dash_path}: variable ${v['name']}", q))

    bad = check_dashboard(dash_path, dash)
    checked = set()
    for where, expr in uses:
        names = expr_names(expr)
        if not names and where.startswith(dash_path) and "variable" not in where:
            print(f"NO METRIC in {where}: {expr}")
            bad += 1
        for n in sorted(names):
            checked.add(n)
            if not exported(n, samples, types):
                print(f"NOT EXPORTED: {n} used by {where}")
                bad += 1
    print(f"names.py: {len(uses)} expressions, {len(checked)} distinct metric names, "
          f"{len(samples)} sample names in {len(scrapes)} scrapes, {bad} problems")
    return 1 if bad else 0


def dashboard_as_rules(dash_path, out_path):
    """Writes every dashboard query as a recording rule (Grafana variables
    replaced by plain values) so that `promtool check rules` parses them."""
    dash = json.load(open(dash_path, encoding="utf-8"))
    rules = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                e = t["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
                e = re.sub(r"\$\{?\w+\}?", ".*", e)
                rules.append({"record": f"dashboard:panel_{p['id']}:{t['refId']}", "expr": e})
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]},
                   open(out_path, "w", encoding="utf-8"), sort_keys=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dashboard-as-rules"]:
        dashboard_as_rules(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
