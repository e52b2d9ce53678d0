#!/usr/bin/env python3
"""Checks the Grafana dashboard (deploy/grafana/peco.json) and its provisioning files.

- The dashboard is JSON with a title, a uid, a `datasource` variable for Prometheus and a `job`
  variable; every variable a query or datasource mentions is defined (or a Grafana built-in).
- Every panel except rows has a Prometheus datasource and at least one query; every query has a
  unique refId in its panel, the panel's datasource, and names a metric.
- Panels lie on the 24-column grid without overlapping, with unique ids.
- The dashboard shows what the issue asks for: each metric of REQUIRED_METRICS is queried.
- dashboards.yml provisions the folder the dashboard is in; datasource.yml provisions a
  Prometheus data source.

With --promql-rules FILE it also writes every query, Grafana variables replaced by example
values, as a recording rule to FILE, for `promtool check rules` to parse (check_deploy.sh runs
it). Metric names are checked by check_metric_names.py.

Usage: /usr/bin/python3 tests/deploy/check_dashboard.py SOURCE_DIR [--promql-rules FILE]
"""

import json
import os
import re
import sys

import yaml

import exported_metrics

DASHBOARD = "deploy/grafana/peco.json"
PROVIDERS = "deploy/grafana/dashboards.yml"
DATASOURCES = "deploy/grafana/datasource.yml"

# What the dashboard must show (issue 7): jobs by state, queue, workers, and per job loss by part,
# masked-token accuracy, learning rate, images/s, MFU, data-wait share, code usage and perplexity,
# restarts, checkpoint sizes and times.
REQUIRED_METRICS = [
    "peco_jobs",
    "peco_job_queue_wait_seconds_bucket",
    "peco_workers",
    "peco_job_loss",
    "peco_worker_rank_loss_pixel",
    "peco_worker_rank_loss_perceptual",
    "peco_worker_rank_loss_codebook",
    "peco_worker_rank_mlm_acc",
    "peco_worker_rank_lr",
    "peco_worker_rank_images_per_second",
    "peco_worker_rank_mfu",
    "peco_worker_rank_data_wait_share",
    "peco_worker_rank_codes_used",
    "peco_worker_rank_perplexity",
    "peco_job_restarts_total",
    "peco_job_restarts_so_far",
    "peco_worker_rank_checkpoint_bytes",
    "peco_worker_rank_checkpoint_seconds",
    "peco_worker_checkpoint_upload_seconds_bucket",
]

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                    "__range_ms", "__from", "__to", "__dashboard", "__name"}
# Example values of variables, to make queries parseable PromQL.
EXAMPLE_VALUES = {"job": ".+", "__rate_interval": "1m", "__interval": "1m", "__range": "1h"}

# $name, ${name}, ${name:format} and the old [[name]].
_VARIABLE = re.compile(
    r"\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")


def variables_in(text):
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def substitute(text):
    return _VARIABLE.sub(lambda m: EXAMPLE_VALUES.get(next(g for g in m.groups() if g), "x"), text)


def check_grid(panels, problems):
    occupied = {}
    for panel in panels:
        pos = panel.get("gridPos")
        name = "panel %r" % panel.get("title")
        if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int) for k in "hwxy"):
            problems.append("%s: gridPos needs integers h, w, x, y" % name)
            continue
        if pos["w"] < 1 or pos["h"] < 1 or pos["x"] < 0 or pos["y"] < 0 or pos["x"] + pos["w"] > 24:
            problems.append("%s: gridPos %r is off the 24-column grid" % (name, pos))
            continue
        for y in range(pos["y"], pos["y"] + pos["h"]):
            for x in range(pos["x"], pos["x"] + pos["w"]):
                if (x, y) in occupied:
                    problems.append("%s overlaps panel %r" % (name, occupied[(x, y)]))
                    break
                occupied[(x, y)] = panel.get("title")
            else:
                continue
            break


def check_dashboard(dashboard, problems, queries):
    for field in ("title", "uid", "schemaVersion", "panels", "templating"):
        if field not in dashboard:
            problems.append("dashboard: missing %r" % field)
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    datasource = variables.get("datasource")
    if not datasource or (datasource.get("type"), datasource.get("query")) != ("datasource",
                                                                               "prometheus"):
        problems.append("dashboard: needs a variable 'datasource' of type datasource "
                        "for prometheus")
    if "job" not in variables:
        problems.append("dashboard: needs a variable 'job' (the peco job ids)")
    defined = set(variables) | GRAFANA_BUILTINS

    ids = set()
    panels = dashboard.get("panels", [])
    for panel in panels:
        title = panel.get("title")
        name = "panel %r" % title
        if not title:
            problems.append("panel id %r: no title" % panel.get("id"))
        if panel.get("id") in ids or not isinstance(panel.get("id"), int):
            problems.append("%s: id %r is missing or not unique" % (name, panel.get("id")))
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            # A row only groups the panels below it: no data source, no query.
            if panel.get("targets"):
                problems.append("%s: a row has no queries" % name)
            continue
        ds = panel.get("datasource")
        if not isinstance(ds, dict) or ds.get("type") != "prometheus" or not ds.get("uid"):
            problems.append("%s: needs a prometheus datasource with a uid" % name)
        targets = panel.get("targets") or []
        if not targets:
            problems.append("%s: has no query" % name)
        refs = set()
        for target in targets:
            ref = target.get("refId")
            if not ref or ref in refs:
                problems.append("%s: refId %r is missing or repeated" % (name, ref))
            refs.add(ref)
            if target.get("datasource") != ds:
                problems.append("%s, query %s: datasource differs from the panel's" % (name, ref))
            expr = target.get("expr", "")
            metrics = exported_metrics.metric_tokens(expr)
            if not expr.strip() or not (metrics or re.search(r"\bup\b", expr)):
                problems.append("%s, query %s: names no metric: %r" % (name, ref, expr))
            queries.append(("%s %s" % (title, ref), expr))
        texts = [json.dumps(ds)] + [t.get("expr", "") + " " + t.get("legendFormat", "")
                                    for t in targets]
        for text in texts:
            for variable in variables_in(text) - defined:
                problems.append("%s: uses the undefined variable $%s" % (name, variable))
    check_grid(panels, problems)

    queried = set()
    for _, expr in queries:
        queried |= exported_metrics.metric_tokens(expr)
    for metric in REQUIRED_METRICS:
        if metric not in queried:
            problems.append("dashboard: no panel shows %s" % metric)


def check_provisioning(source_dir, problems):
    with open(os.path.join(source_dir, PROVIDERS), encoding="utf-8") as f:
        providers = yaml.safe_load(f)
    if providers.get("apiVersion") != 1 or not providers.get("providers"):
        problems.append("%s: needs apiVersion 1 and a providers list" % PROVIDERS)
    for provider in providers.get("providers") or []:
        if provider.get("type") != "file" or not (provider.get("options") or {}).get("path"):
            problems.append("%s: provider %r needs type file and options.path"
                            % (PROVIDERS, provider.get("name")))
    with open(os.path.join(source_dir, DATASOURCES), encoding="utf-8") as f:
        datasources = yaml.safe_load(f)
    if datasources.get("apiVersion") != 1:
        problems.append("%s: needs apiVersion 1" % DATASOURCES)
    if not any(d.get("type") == "prometheus" and d.get("url") and d.get("name")
               for d in datasources.get("datasources") or []):
        problems.append("%s: needs a prometheus data source with a name and a url" % DATASOURCES)


def main(argv):
    args = argv[1:]
    rules_out = None
    if "--promql-rules" in args:
        i = args.index("--promql-rules")
        rules_out = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = args[0]
    problems = []
    queries = []
    try:
        with open(os.path.join(source_dir, DASHBOARD), encoding="utf-8") as f:
            dashboard = json.load(f)
    except ValueError as error:
        print("FAIL: %s is not JSON: %s" % (DASHBOARD, error))
        return 1
    check_dashboard(dashboard, problems, queries)
    check_provisioning(source_dir, problems)
    if rules_out:
        rules = [{"record": "dashboard_query_%d" % i, "expr": substitute(expr)}
                 for i, (_, expr) in enumerate(queries)]
        with open(rules_out, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    print("dashboard: %d panels, %d queries" % (len(dashboard.get("panels", [])), len(queries)))
    for problem in problems:
        print("FAIL: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
