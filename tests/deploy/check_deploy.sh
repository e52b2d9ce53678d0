#!/usr/bin/env bash
# Checks the deployment and monitoring files of deploy/ (docs/DEPLOY.md):
#   - YAML syntax and style of every deploy/ YAML file (yamllint);
#   - Prometheus: `promtool check config`, `promtool check rules`, `promtool test rules` on every
#     deploy/prometheus/*_test.yml, and that each alert has a firing and a quiet test case;
#   - metric names: every metric the rules and the dashboard name is exported by
#     coordinator/coordinator_metrics.cc or worker/worker_metrics.cc, or listed in
#     deploy/pending_metrics.yml;
#   - Grafana: the dashboard's structure (datasource and queries on every panel, grid, variables,
#     the panels the issue asks for), its provisioning files, and its queries parsed by promtool;
#   - systemd: `systemd-analyze verify` of the units, `systemd-sysusers --dry-run` of the user;
#   - Kubernetes: the manifests' structure (check_kubernetes.py) and their Kubernetes schema
#     (k8s_schema.cjs with the npm package kubernetes-models, offline);
#   - daemon flags: every flag the units, env files, manifests and docs/DEPLOY.md pass to
#     peco-coordinator or peco-worker is one of their ABSL_FLAGs.
# Prints each check, then "N passed, N failed, N skipped"; exits 1 if any failed. A check is
# skipped, with a message, only when its tool is not installed (scripts/setup installs them all).
#
# Usage: tests/deploy/check_deploy.sh [SOURCE_DIR]   (default: the checkout holding this script)
set -euo pipefail

src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
here="$src/tests/deploy"
# Debian's python3-yaml belongs to /usr/bin/python3 (DESIGN.md section 8).
python=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1  # nothing written into the source tree
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0

# check NAME COMMAND...: runs COMMAND, shows its output when it fails.
check() {
  local name=$1
  shift
  if "$@" >"$tmp/output" 2>&1; then
    passed=$((passed + 1))
    echo "PASS  $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$tmp/output"
  fi
}

skip() {
  skipped=$((skipped + 1))
  echo "SKIP  $1: $2"
}

have() { command -v "$1" >/dev/null 2>&1; }

have_python_yaml() { [ -x "$python" ] && "$python" -c 'import yaml' 2>/dev/null; }

# `systemd-analyze verify` reports unknown keys and bad values as warnings and still exits 0, so
# any output about peco's units counts as a failure (lines about the host's own units, which it
# loads as dependencies, do not). It also requires each ExecStart binary to exist. Rather than
# rewrite the units, it runs on the unmodified units inside a temporary root (--root) that holds
# them in /etc/systemd/system, the host's system units (for network-online.target and the like),
# and stand-in executables at the ExecStart paths (/usr/local/bin/peco-*): the files are checked
# exactly as installed, without needing a peco build.
verify_units() {
  local root="$tmp/systemd-root"
  mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/lib/systemd"
  cp -r /lib/systemd/system "$root/lib/systemd/"
  local units=()
  for unit in "$src"/deploy/systemd/*.service; do
    cp "$unit" "$root/etc/systemd/system/"
    units+=("$(basename "$unit")")
    sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$unit" | while read -r binary; do
      mkdir -p "$root$(dirname "$binary")"
      printf '#!/bin/sh\nexit 0\n' >"$root$binary"
      chmod +x "$root$binary"
    done
  done
  local output
  output=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || {
    echo "$output"
    return 1
  }
  if grep -qE 'peco-[a-z]+\.service' <<<"$output"; then
    echo "$output"
    return 1
  fi
}

verify_sysusers() {
  mkdir -p "$tmp/sysusers-root/etc"
  systemd-sysusers --root="$tmp/sysusers-root" --dry-run "$src/deploy/systemd/peco.sysusers.conf"
}

# Dashboard queries, Grafana variables replaced by example values, as recording rules.
dashboard_promql() {
  "$python" "$here/check_dashboard.py" "$src" --promql-rules "$tmp/dashboard_rules.yml" >/dev/null
  promtool check rules "$tmp/dashboard_rules.yml"
}

kubernetes_schema() {
  "$python" "$here/check_kubernetes.py" "$src" --json-out "$tmp/objects.json" >/dev/null || true
  node "$here/k8s_schema.cjs" "$tmp/objects.json"
}

echo "deploy checks in $src"

if have yamllint; then
  check "yamllint deploy/" yamllint --strict -c "$here/yamllint.yml" "$src/deploy"
else
  skip "yamllint deploy/" "yamllint is not installed (Debian package yamllint)"
fi

if have promtool; then
  check "promtool check config prometheus.yml" \
    promtool check config "$src/deploy/prometheus/prometheus.yml"
  check "promtool check rules alerts.yml" promtool check rules "$src/deploy/prometheus/alerts.yml"
  for test_file in "$src"/deploy/prometheus/*_test.yml; do
    check "promtool test rules $(basename "$test_file")" promtool test rules "$test_file"
  done
else
  for name in "promtool check config" "promtool check rules" "promtool test rules"; do
    skip "$name" "promtool is not installed (Debian package prometheus)"
  done
fi

if have_python_yaml; then
  check "alert rules and their test cases" "$python" "$here/check_alert_tests.py" "$src"
  check "metric names are exported or pending" "$python" "$here/check_metric_names.py" "$src"
  check "grafana dashboard and provisioning" "$python" "$here/check_dashboard.py" "$src"
  if have promtool; then
    check "grafana queries parse as PromQL" dashboard_promql
  else
    skip "grafana queries parse as PromQL" "promtool is not installed (Debian package prometheus)"
  fi
  check "kubernetes manifests: structure" "$python" "$here/check_kubernetes.py" "$src"
  check "daemon flags in units, env files, manifests, docs" \
    "$python" "$here/check_daemon_flags.py" "$src"
else
  skip "python checks" "$python with yaml is not installed (Debian package python3-yaml)"
fi

if have node && [ -d "$here/node_modules/kubernetes-models" ] && have_python_yaml; then
  check "kubernetes manifests: schema" kubernetes_schema
elif ! have node; then
  skip "kubernetes manifests: schema" "node is not installed (Debian package nodejs)"
else
  skip "kubernetes manifests: schema" \
    "tests/deploy/node_modules is not installed (scripts/setup runs npm ci there)"
fi

if have systemd-analyze; then
  check "systemd-analyze verify units" verify_units
else
  skip "systemd-analyze verify units" "systemd-analyze is not installed (Debian package systemd)"
fi
if have systemd-sysusers; then
  check "systemd-sysusers --dry-run" verify_sysusers
else
  skip "systemd-sysusers --dry-run" "systemd-sysusers is not installed (Debian package systemd)"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
