#!/usr/bin/python3
"""Checks the container image recipe, deploy/container/Dockerfile, without a container runtime.

  - every local COPY source and every script a RUN calls exists (scripts executable), and
    scripts/setup accepts the --build it is given;
  - each program the build stage copies out of /build/<dir>/ is an add_executable of <dir>/;
  - the image holds every program the Kubernetes manifests run, and its USER is their runAsUser;
  - .dockerignore keeps build trees and .git out of the context;
  - scripts/runtime-packages on the programs built here lists packages that are all installed,
    among them LibTorch's, gRPC's and OpenBLAS's, so the runtime stage's apt-get has a real list.

Usage: check_container.py SOURCE_DIR PROGRAM...   Prints "N passed, N failed"; exit 1 on a failure.
"""
import os
import re
import subprocess
import sys

import yaml

src = sys.argv[1]
programs = sys.argv[2:]
failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
        print(f"PASS  {what}")
    else:
        failures.append(what)
        print(f"FAIL  {what}")


def instructions(path):
    """(keyword, argument) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in open(path, encoding="utf-8"):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, argument = current.partition(" ")
        out.append((keyword.upper(), argument.strip()))
        current = ""
    return out


dockerfile = os.path.join(src, "deploy/container/Dockerfile")
steps = instructions(dockerfile)
keywords = [k for k, _ in steps]
check(keywords.count("FROM") == 2 and steps[0][0] == "FROM", "two stages, FROM first")
for keyword, argument in steps:
    if keyword == "COPY" and not argument.startswith("--from"):
        sources = argument.split()[:-1]
        for source in sources:
            check(os.path.exists(os.path.join(src, source)), f"COPY source {source} exists")
    if keyword == "RUN":
        for script in sorted(set(re.findall(r"\bscripts/[\w.-]+", argument))):
            path = os.path.join(src, script)
            check(os.path.isfile(path) and os.access(path, os.X_OK),
                  f"RUN calls {script}, which exists and is executable")
        if "scripts/setup --build" in argument:
            setup = open(os.path.join(src, "scripts/setup"), encoding="utf-8").read()
            # An option of its argument test or of its case statement.
            check(re.search(r'"--build"|^\s*--build\)', setup, re.M) is not None,
                  "scripts/setup accepts --build")

run_text = " ".join(a for k, a in steps if k == "RUN")
built = re.findall(r"/build/(\w+)/([\w-]+)", run_text)
check(len(built) >= 4, "the build stage copies the four programs out of /build")
for directory, name in built:
    cmake = os.path.join(src, directory, "CMakeLists.txt")
    text = open(cmake, encoding="utf-8").read() if os.path.exists(cmake) else ""
    check(re.search(r"add_executable\(\s*" + re.escape(name) + r"\b", text) is not None,
          f"/build/{directory}/{name} is an add_executable of {directory}/CMakeLists.txt")
image_programs = {f"/usr/local/bin/{name}" for _, name in built}
users = [a for k, a in steps if k == "USER"]
check(len(users) == 1, "one USER")

manifests = os.path.join(src, "deploy/kubernetes")
for name in sorted(os.listdir(manifests)):
    if not name.endswith(".yaml") or name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(open(os.path.join(manifests, name), encoding="utf-8")):
        pod = (doc or {}).get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        for container in pod.get("containers", []):
            for command in container.get("command", [])[:1]:
                check(command in image_programs, f"{name}: {command} is in the image")
        run_as = pod.get("securityContext", {}).get("runAsUser")
        check(users and str(run_as) == users[0], f"{name}: runAsUser {run_as} is the image's USER")

ignore = open(os.path.join(src, ".dockerignore"), encoding="utf-8").read().split()
check("build" in ignore and "build-*" in ignore and ".git" in ignore,
      ".dockerignore keeps build trees and .git out")

if programs:
    result = subprocess.run([os.path.join(src, "scripts/runtime-packages"), *programs],
                            capture_output=True, text=True)
    check(result.returncode == 0, "scripts/runtime-packages resolves every library: " +
          result.stderr.strip())
    packages = result.stdout.split()
    for wanted in ("libtorch", "libgrpc++", "libopenblas0-openmp", "libprotobuf", "libsqlite3"):
        check(any(p.startswith(wanted) for p in packages), f"the runtime packages include {wanted}*")
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *packages],
                               capture_output=True, text=True).stdout
    missing = [p for p in packages if f"{p} install ok installed" not in installed]
    check(packages and not missing, f"all {len(packages)} runtime packages are Debian packages "
          f"installed here (missing: {missing})")

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
