#!/usr/bin/env python3
"""Checks that deploy/ names only metrics that exist.

Every peco_* metric in the alert rules (deploy/prometheus/alerts.yml) and in the Grafana
dashboard's queries (deploy/grafana/peco.json) must be a series the exporters expose (read from
their source files by exported_metrics.py) or be listed in deploy/pending_metrics.yml. An entry
of pending_metrics.yml must not be exported already (it is then stale: remove it) and must be
named by a rule or a panel.

Usage: /usr/bin/python3 tests/deploy/check_metric_names.py SOURCE_DIR
Prints the pending metrics in use; exits 1 on any problem.
"""

import json
import os
import sys

import yaml

import exported_metrics

ALERTS = "deploy/prometheus/alerts.yml"
DASHBOARD = "deploy/grafana/peco.json"


def rule_expressions(source_dir):
    with open(os.path.join(source_dir, ALERTS), encoding="utf-8") as f:
        document = yaml.safe_load(f)
    for group in document["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            yield "%s: %s" % (ALERTS, name), rule["expr"]


def dashboard_expressions(source_dir):
    with open(os.path.join(source_dir, DASHBOARD), encoding="utf-8") as f:
        dashboard = json.load(f)
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if variable.get("type") == "query" and query:
            yield "%s: variable %s" % (DASHBOARD, variable["name"]), query
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield "%s: panel %r" % (DASHBOARD, panel.get("title")), target.get("expr", "")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = argv[1]
    exported = exported_metrics.series_names(exported_metrics.exported_families(source_dir))
    pending_families = exported_metrics.pending_families(source_dir)
    pending = exported_metrics.series_names(pending_families)

    problems = []
    used_pending = {}
    expressions = list(rule_expressions(source_dir)) + list(dashboard_expressions(source_dir))
    for where, expression in expressions:
        for name in sorted(exported_metrics.metric_tokens(expression)):
            if name in exported:
                continue
            if name in pending:
                used_pending.setdefault(pending[name].name, []).append(where)
                continue
            problems.append("%s names %s, which no exporter exports and %s does not list"
                            % (where, name, exported_metrics.PENDING_FILE))

    exported_family_names = {s: f for s, f in exported.items()}
    for family in pending_families:
        if family.name in exported_family_names:
            problems.append("%s lists %s, which %s exports now: remove the entry"
                            % (exported_metrics.PENDING_FILE, family.name,
                               exported_family_names[family.name].where))
        elif family.name not in used_pending:
            problems.append("%s lists %s, which nothing in deploy/ uses"
                            % (exported_metrics.PENDING_FILE, family.name))

    print("metric names: %d expressions, %d exported families, %d pending in use"
          % (len(expressions), len({f.name for f in exported.values()}), len(used_pending)))
    for name in sorted(used_pending):
        print("  pending: %s (%d uses)" % (name, len(used_pending[name])))
    for problem in problems:
        print("FAIL: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
