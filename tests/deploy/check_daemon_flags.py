#!/usr/bin/env python3
"""Checks that every flag deploy/ and docs/DEPLOY.md pass to the daemons exists.

The flags of peco-coordinator and peco-worker are the ABSL_FLAG definitions of
coordinator/main.cc and worker/main.cc (plus Abseil's own, such as --flagfile). Read from:

- the ExecStart lines of deploy/systemd/*.service;
- PECO_COORDINATOR_FLAGS / PECO_WORKER_FLAGS in deploy/systemd/*.env, commented examples too;
- the command and args of the containers in deploy/kubernetes/*.yaml;
- every command of docs/DEPLOY.md that runs peco-coordinator or peco-worker, and the
  PECO_*_FLAGS settings it shows.

Usage: /usr/bin/python3 tests/deploy/check_daemon_flags.py SOURCE_DIR
"""

import glob
import os
import re
import sys

import yaml

SOURCES = {"peco-coordinator": "coordinator/main.cc", "peco-worker": "worker/main.cc"}
ABSL_BUILTIN = {"help", "helpfull", "helpshort", "helppackage", "version", "only_check_args",
                "flagfile", "fromenv", "tryfromenv", "undefok"}
ENV_VARIABLES = {"PECO_COORDINATOR_FLAGS": "peco-coordinator", "PECO_WORKER_FLAGS": "peco-worker"}

_ABSL_FLAG = re.compile(r"ABSL_FLAG\(\s*[\w:<> ]+?,\s*(\w+)\s*,")
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")


def known_flags(source_dir):
    flags = {}
    for binary, path in SOURCES.items():
        with open(os.path.join(source_dir, path), encoding="utf-8") as f:
            flags[binary] = set(_ABSL_FLAG.findall(f.read())) | ABSL_BUILTIN
        if len(flags[binary]) == len(ABSL_BUILTIN):
            raise ValueError("no ABSL_FLAG found in %s" % path)
    return flags


def joined_lines(text):
    """Lines with backslash continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def uses(source_dir):
    """(where, binary, command line) for every daemon invocation found."""
    found = []
    for path in sorted(glob.glob(os.path.join(source_dir, "deploy/systemd/*.service"))):
        with open(path, encoding="utf-8") as f:
            for line in joined_lines(f.read()):
                match = re.match(r"\s*Exec\w*=\S*/(peco-coordinator|peco-worker)\s(.*)", line)
                if match:
                    found.append((os.path.relpath(path, source_dir), match.group(1),
                                  match.group(2)))
    for path in sorted(glob.glob(os.path.join(source_dir, "deploy/systemd/*.env"))):
        with open(path, encoding="utf-8") as f:
            for line in joined_lines(f.read()):
                match = re.match(r"\s*#?\s*(\w+)=(.*)", line)
                if match and match.group(1) in ENV_VARIABLES:
                    found.append((os.path.relpath(path, source_dir),
                                  ENV_VARIABLES[match.group(1)], match.group(2)))
    for path in sorted(glob.glob(os.path.join(source_dir, "deploy/kubernetes/*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for document in yaml.safe_load_all(f):
                pod = (((document or {}).get("spec") or {}).get("template") or {}).get("spec")
                for container in (pod or {}).get("containers") or []:
                    command = container.get("command") or []
                    binary = os.path.basename(command[0]) if command else ""
                    if binary in SOURCES:
                        found.append((os.path.relpath(path, source_dir), binary,
                                      " ".join(str(a) for a in command[1:] +
                                               (container.get("args") or []))))
    with open(os.path.join(source_dir, "docs/DEPLOY.md"), encoding="utf-8") as f:
        for number, line in markdown_lines(f.read()):
            for match in re.finditer(r"(?<![\w/-])(?:\S*/)?(peco-coordinator|peco-worker)"
                                     r"(?![\w.-])([^`|;&>#\n]*)", line):
                found.append(("docs/DEPLOY.md:%d" % number, match.group(1), match.group(2)))
            for match in re.finditer(r"\b(PECO_\w+_FLAGS)=([^`\n]*)", line):
                if match.group(1) not in ENV_VARIABLES:
                    continue
                found.append(("docs/DEPLOY.md:%d" % number, ENV_VARIABLES[match.group(1)],
                              match.group(2)))
    return found


def markdown_lines(text):
    """(first line number, text): each line of a code block (continuations joined), each
    paragraph of prose as one line (an inline command may wrap)."""
    result = []
    in_code = False
    paragraph, start = [], 0
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            if paragraph:
                result.append((start, " ".join(paragraph)))
                paragraph = []
            in_code = not in_code
        elif in_code:
            first = i
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            result.append((first + 1, line))
        elif line.strip():
            if not paragraph:
                start = i + 1
            paragraph.append(line.strip())
        elif paragraph:
            result.append((start, " ".join(paragraph)))
            paragraph = []
        i += 1
    if paragraph:
        result.append((start, " ".join(paragraph)))
    return result


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source_dir = argv[1]
    flags = known_flags(source_dir)
    problems = []
    checked = 0
    for where, binary, line in uses(source_dir):
        for flag in _FLAG.findall(line):
            checked += 1
            if flag not in flags[binary]:
                problems.append("%s: %s has no flag --%s" % (where, binary, flag))
    print("daemon flags: %d uses checked" % checked)
    for problem in problems:
        print("FAIL: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
