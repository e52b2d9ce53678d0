#!/usr/bin/env python3
"""Checks that the alert rules are complete and that each one is unit-tested both ways.

- Every alert in deploy/prometheus/alerts.yml has a severity label and summary and description
  annotations.
- deploy/prometheus/alerts_test.yml (run by `promtool test rules`) has, for every alert, a case
  where it fires (non-empty exp_alerts) and a case where it does not (empty exp_alerts), and names
  no alert that alerts.yml lacks.
- Every alert the issue asks for is there (REQUIRED_ALERTS).

Usage: /usr/bin/python3 tests/deploy/check_alert_tests.py SOURCE_DIR
"""

import os
import sys

import yaml

ALERTS = "deploy/prometheus/alerts.yml"
TESTS = "deploy/prometheus/alerts_test.yml"

# Issue 7: job failed, job restarting repeatedly, job stalled, worker lost, queue wait high,
# checkpoint verification failure, loss NaN, codebook collapse.
REQUIRED_ALERTS = [
    "PecoJobFailed",
    "PecoJobRestartingRepeatedly",
    "PecoJobStalled",
    "PecoWorkerLost",
    "PecoQueueWaitHigh",
    "PecoCheckpointVerificationFailed",
    "PecoLossNotFinite",
    "PecoCodebookCollapse",
]


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = argv[1]
    with open(os.path.join(source_dir, ALERTS), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    with open(os.path.join(source_dir, TESTS), encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    problems = []

    alerts = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            alerts.append(name)
            if not (rule.get("labels") or {}).get("severity"):
                problems.append("%s: alert %s has no severity label" % (ALERTS, name))
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description"):
                if not annotations.get(key):
                    problems.append("%s: alert %s has no %s annotation" % (ALERTS, name, key))
    if len(set(alerts)) != len(alerts):
        problems.append("%s: an alert name is used twice" % ALERTS)
    for name in REQUIRED_ALERTS:
        if name not in alerts:
            problems.append("%s: alert %s is missing" % (ALERTS, name))

    fires, quiet = set(), set()
    for case in tests.get("tests") or []:
        for check in case.get("alert_rule_test") or []:
            name = check.get("alertname")
            if name not in alerts:
                problems.append("%s: test %r checks %s, which %s does not define"
                                % (TESTS, case.get("name"), name, ALERTS))
            (fires if check.get("exp_alerts") else quiet).add(name)
    for name in alerts:
        if name not in fires:
            problems.append("%s: no case where %s fires" % (TESTS, name))
        if name not in quiet:
            problems.append("%s: no case where %s does not fire" % (TESTS, name))

    print("alert tests: %d alerts, %d with a firing case, %d with a quiet case"
          % (len(alerts), len(fires & set(alerts)), len(quiet & set(alerts))))
    for problem in problems:
        print("FAIL: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
