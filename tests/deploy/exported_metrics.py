#!/usr/bin/env python3
"""The Prometheus metric names peco exports, read from the exporters' source files.

Used by the deploy checks (tests/deploy/check_deploy.sh) so that an alert rule or a dashboard
panel naming a metric that no exporter has fails the test. Reads:

  coordinator/coordinator_metrics.cc  prometheus::Build<Type>().Name("peco_...") families
  worker/worker_metrics.cc            the same, plus the per-rank gauges
                                      Name(absl::StrCat("peco_worker_rank_", name)) made from
                                      each {"field", "help"} entry of kRankValues, and the
                                      gauges named by kPercentValues' {"field", "peco_...",
                                      "help"} entries (percent values exported as ratios)

and deploy/pending_metrics.yml, the metrics deploy/ already names that the exporters do not
export yet.

Run alone it lists every exported family with its type and source line:
  /usr/bin/python3 tests/deploy/exported_metrics.py [SOURCE_DIR]
"""

import os
import re
import sys

import yaml

EXPORTER_FILES = ("coordinator/coordinator_metrics.cc", "worker/worker_metrics.cc")
PENDING_FILE = "deploy/pending_metrics.yml"

# Series a family of each type exposes, as suffixes of the family name.
SERIES_SUFFIXES = {
    "gauge": ("",),
    "counter": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}

_BUILD_NAME = re.compile(
    r"Build(Gauge|Counter|Histogram|Summary)\(\)\s*\.Name\(\s*"
    r'(?:"(?P<name>peco_[A-Za-z0-9_]+)"|absl::StrCat\(\s*"(?P<prefix>peco_[A-Za-z0-9_]+)"\s*,)')
_TABLE = re.compile(r"kRankValues\[\]\s*=\s*\{(?P<body>.*?)\};", re.S)
_TABLE_ENTRY = re.compile(r'\{\s*"([a-z0-9_]+)"\s*,')
_PERCENT_TABLE = re.compile(r"kPercentValues\[\]\s*=\s*\{(?P<body>.*?)\};", re.S)
_PERCENT_ENTRY = re.compile(r'\{\s*"[a-z0-9_]+"\s*,\s*"(peco_[a-z0-9_]+)"\s*,')


class Family:
    def __init__(self, name, kind, where):
        self.name = name
        self.kind = kind  # gauge, counter, histogram or summary
        self.where = where  # "file:line"

    def series(self):
        return [self.name + suffix for suffix in SERIES_SUFFIXES[self.kind]]


def _line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def exported_families(source_dir):
    """Every metric family the exporters register, in source order."""
    families = []
    for relative in EXPORTER_FILES:
        path = os.path.join(source_dir, relative)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for match in _BUILD_NAME.finditer(text):
            kind = match.group(1).lower()
            if match.group("name"):
                where = "%s:%d" % (relative, _line_of(text, match.start("name")))
                families.append(Family(match.group("name"), kind, where))
                continue
            # A family per entry of the per-rank table.
            table = _TABLE.search(text)
            if table is None:
                raise ValueError("%s: names metrics with the prefix %s but has no kRankValues "
                                 "table to read the fields from"
                                 % (relative, match.group("prefix")))
            for entry in _TABLE_ENTRY.finditer(table.group("body")):
                offset = table.start("body") + entry.start(1)
                where = "%s:%d" % (relative, _line_of(text, offset))
                families.append(Family(match.group("prefix") + entry.group(1), kind, where))
        percent = _PERCENT_TABLE.search(text)
        if percent is not None:
            for entry in _PERCENT_ENTRY.finditer(percent.group("body")):
                offset = percent.start("body") + entry.start(1)
                where = "%s:%d" % (relative, _line_of(text, offset))
                families.append(Family(entry.group(1), "gauge", where))
    if not families:
        raise ValueError("no metric families found in %s" % ", ".join(EXPORTER_FILES))
    return families


def pending_families(source_dir):
    """The families deploy/ names ahead of the exporters (deploy/pending_metrics.yml)."""
    with open(os.path.join(source_dir, PENDING_FILE), encoding="utf-8") as f:
        document = yaml.safe_load(f)
    families = []
    for entry in document.get("metrics") or []:
        for field in ("name", "type", "labels", "exporter", "help", "source"):
            if field not in entry:
                raise ValueError("%s: entry %r lacks %r" % (PENDING_FILE, entry.get("name"), field))
        if entry["type"] not in SERIES_SUFFIXES:
            raise ValueError("%s: %s: unknown type %r"
                             % (PENDING_FILE, entry["name"], entry["type"]))
        families.append(Family(entry["name"], entry["type"], PENDING_FILE))
    return families


def series_names(families):
    """Maps each series name the families expose to its family."""
    names = {}
    for family in families:
        for series in family.series():
            names[series] = family
    return names


_METRIC_TOKEN = re.compile(r"(?<![A-Za-z0-9_:])peco_[A-Za-z0-9_]+")


def metric_tokens(expression):
    """The peco_* metric names a PromQL expression (or a Grafana query) mentions."""
    # Quoted strings hold label values and Grafana text, not metric names.
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expression)
    return set(_METRIC_TOKEN.findall(unquoted))


def main(argv):
    source_dir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    for family in exported_families(source_dir):
        print("%-48s %-9s %s" % (family.name, family.kind, family.where))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
