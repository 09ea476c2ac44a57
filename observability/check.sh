#!/usr/bin/env bash
# Static checks for observability/: Prometheus configs and rules (promtool),
# rule unit tests, and the Grafana dashboard (JSON parse, every panel's expr
# printed, every metric name checked against the gateway's metrics and the
# recording rules; the dashboard against Grafana's schema). Exits non-zero on
# any failure.
# Needs promtool (Debian: apt-get install prometheus), python3 and the
# packages in requirements.txt (pip install -r observability/requirements.txt).
# Cannot check: that a running Grafana renders the dashboard, or that the
# Collector or docker compose accept their files.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail=0
# run LABEL CMD...: run CMD, record failure, keep going.
run() {
  local label="$1"; shift
  echo "== $label"
  if ! "$@"; then
    echo "FAILED: $label" >&2
    fail=1
  fi
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found (apt-get install prometheus)" >&2
  exit 1
fi

# promtool resolves rule_files relative to the config file; run from there.
cd "$here/prometheus" || exit 1
run "promtool check config prometheus.yml" promtool check config prometheus.yml
run "promtool check config prometheus.local.yml" promtool check config prometheus.local.yml
run "promtool check rules rules.yml" promtool check rules rules.yml
run "promtool test rules rules_test.yml" promtool test rules rules_test.yml

cd "$here" || exit 1

read -r -d '' DASHBOARD_CHECK <<'PY'
import json, re, sys

# The metrics the gateway exposes (histograms add _bucket/_sum/_count).
HISTOGRAMS = {
    'gateway_request_duration_seconds',
    'gateway_wasm_instantiate_duration_seconds',
    'gateway_native_queue_duration_seconds',
    'gateway_native_compute_duration_seconds',
    'gateway_shadow_duration_seconds',
    'gateway_shadow_latency_ratio',
}
OTHERS = {
    'gateway_fallbacks_total', 'gateway_shed_total',
    'gateway_circuit_transitions_total', 'gateway_circuit_state',
    'gateway_in_flight_requests', 'gateway_shadow_comparisons_total',
    'gateway_wasm_instances',
}
allowed = set(OTHERS)
for h in HISTOGRAMS:
    allowed |= {h + '_bucket', h + '_sum', h + '_count'}
# Recording rules defined in prometheus/rules.yml may be used too.
rules_text = open('prometheus/rules.yml').read()
allowed |= set(re.findall(r'^\s*-\s*record:\s*(\S+)', rules_text, re.M))

dash = json.load(open('grafana/dashboards/gateway.json'))
errors = []
if dash.get('uid') != 'gateway-wasm-vs-native':
    errors.append('dashboard uid is %r' % dash.get('uid'))

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get('panels', []))

ident = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
used = set()

def check_expr(where, expr):
    # Drop strings, label matchers, groupings and ranges, then collect names.
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r'\{[^}]*\}', '', e)
    e = re.sub(r'\b(by|without)\s*\([^)]*\)', '', e)
    e = re.sub(r'\[[^\]]*\]', '', e)
    names = [n for n in ident.findall(e) if n.startswith('gateway_') or ':' in n]
    if not names:
        errors.append('%s: no gateway metric in %r' % (where, expr))
    for n in names:
        used.add(n)
        if n not in allowed:
            errors.append('%s: unknown metric %r in %r' % (where, n, expr))

count = 0
for p in walk(dash.get('panels', [])):
    if p.get('type') == 'row':
        continue
    title = p.get('title')
    if p.get('datasource', {}).get('uid') != 'prometheus':
        errors.append('panel %r: datasource uid is not prometheus' % title)
    targets = p.get('targets', [])
    if not targets:
        errors.append('panel %r has no targets' % title)
    for t in targets:
        count += 1
        expr = t.get('expr', '')
        print('[%2s] %s / %s: %s' % (p.get('id'), title, t.get('refId'), expr))
        check_expr('panel %r' % title, expr)
        # Every per-route query follows the $route variable (in-flight
        # requests and Wasm instance slots have no route label).
        unrouted = ('gateway_in_flight_requests', 'gateway_wasm_instances')
        if not any(m in expr for m in unrouted) and '$route' not in expr:
            errors.append('panel %r: expr does not use $route: %r' % (title, expr))

variables = {v['name']: v for v in dash.get('templating', {}).get('list', [])}
if 'route' not in variables:
    errors.append('no template variable route')
else:
    check_expr('variable route', variables['route'].get('definition', ''))

print('%d panel targets; metrics queried: %s' % (count, ' '.join(sorted(used))))
for e in errors:
    print('ERROR:', e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
run "dashboard grafana/dashboards/gateway.json" python3 -c "$DASHBOARD_CHECK"

# The dashboard against Grafana's schema (grafana-foundation-sdk) and the
# project's rules: see grafana/validate_dashboard.py. Needs the packages in
# requirements.txt; it says how to install them when they are missing.
run "validate_dashboard.py (Grafana schema)" python3 grafana/validate_dashboard.py

# YAML syntax of the other files, when PyYAML is present.
if python3 -c 'import yaml' 2>/dev/null; then
  run "yaml syntax" python3 -c '
import sys, yaml
for f in sys.argv[1:]:
    yaml.safe_load(open(f))
    print("yaml ok:", f)
' otel-collector.yaml docker-compose.yml \
    grafana/provisioning/datasources/prometheus.yml \
    grafana/provisioning/dashboards/dashboards.yml
else
  echo "== PyYAML not installed: skipping YAML syntax check of collector/compose/provisioning files"
fi

if [ "$fail" -ne 0 ]; then
  echo "observability checks FAILED" >&2
  exit 1
fi
echo "observability checks passed"
