#!/usr/bin/env bash
# The monitoring test: alert rules, dashboard and scrape config against what
# the binaries really export.
#
#   1. promtool check rules / test rules (every alert firing and not firing);
#   2. promtool check config on the example scrape config (with its
#      file_sd target files and the rules);
#   3. k8s/base/prometheusrule.yaml is what monitoring/gen-prometheusrule.sh
#      makes of the rules file now;
#   4. every dashboard query is valid PromQL (checked by promtool as a
#      recording rule, Grafana variables replaced);
#   5. builds tickring (debug, in $CARGO_TARGET_DIR), starts `tickring demo`
#      on free loopback ports with its rings in a temp dir, waits until every
#      collector and the gateway answer /ready, scrapes every /metrics,
#      runs `promtool check metrics` on each scrape (any complaint fails),
#      and checks that every metric name used by the rules and by the
#      dashboard (panels and variables) has samples in the scrapes.
#
# Runnable alone (as root or not), idempotent; the demo is stopped by its
# PID and its rings and configs removed on any exit. Exits non-zero on any
# failure. Env: TICKRING_BIN (use this binary, skip the build),
# TICKRING_FIXTURES (the captures the demo replays), CARGO_TARGET_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
MON=$REPO/monitoring
RULES=$MON/rules/tickring.rules.yml
DASH=$MON/grafana/tickring.json
t0=$(date +%s)
step() { echo "== $* ($(($(date +%s) - t0)) s)"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v promtool >/dev/null || fail "promtool not found (Debian package prometheus; .ci/setup installs it)"
command -v curl >/dev/null || fail "curl not found"

tmp=$(mktemp -d /tmp/tickring-monitoring.XXXXXX)
demo_pid=
cleanup() {
    local rc=$?
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        # SIGTERM: the demo stops its collectors and gateway and removes its rings.
        kill -TERM "$demo_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ] && [ -s "$tmp/demo.err" ]; then
        echo "--- demo stderr (last 30 lines)" >&2
        tail -30 "$tmp/demo.err" >&2
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "promtool check rules"
promtool check rules "$RULES"

step "promtool test rules"
promtool test rules "$MON"/rules/tests/*.yml

step "promtool check config (static targets, file_sd, rules)"
promtool check config "$MON/prometheus/prometheus.yml"
for f in collectors gateways; do
    ls "$MON"/prometheus/targets/"$f"-*.yml >/dev/null 2>&1 ||
        fail "no $MON/prometheus/targets/$f-*.yml: the file_sd example would check nothing"
done

step "k8s/base/prometheusrule.yaml in sync with $RULES"
"$MON/gen-prometheusrule.sh" "$tmp/prometheusrule.yaml"
diff -u "$REPO/k8s/base/prometheusrule.yaml" "$tmp/prometheusrule.yaml" ||
    fail "k8s/base/prometheusrule.yaml is stale: run monitoring/gen-prometheusrule.sh and commit"

step "python with PyYAML"
PY=$("$REPO/tests/python/setup.sh" "$REPO/tests/monitoring/requirements.txt" monitoring)

step "every dashboard query parses (promtool check rules on them as recording rules)"
"$PY" "$REPO/tests/monitoring/names.py" --dashboard-as-rules "$DASH" "$tmp/dashboard-rules.yml"
promtool check rules "$tmp/dashboard-rules.yml"

if [ -n "${TICKRING_BIN:-}" ]; then
    BIN=$TICKRING_BIN
else
    step "cargo build"
    cargo build --quiet --bin tickring
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/tickring
fi
[ -x "$BIN" ] || fail "no tickring binary at $BIN"

step "start tickring demo"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
gw=127.0.0.1:$port
demo_args=(demo --listen "$gw" --ring-dir "$tmp/rings" --summary-every 0 --duration 600)
[ -n "${TICKRING_FIXTURES:-}" ] && demo_args+=(--samples "$TICKRING_FIXTURES")
"$BIN" "${demo_args[@]}" >"$tmp/demo.out" 2>"$tmp/demo.err" &
demo_pid=$!

# The demo prints each collector's metrics address, then the gateway's line.
deadline=$(($(date +%s) + 60))
until grep -q '^  gateway ' "$tmp/demo.out"; do
    kill -0 "$demo_pid" 2>/dev/null || { cat "$tmp/demo.out" >&2; fail "tickring demo exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "tickring demo did not start within 60 s"
    sleep 0.2
done
mapfile -t collectors < <(grep -o '(metrics http://[0-9.:]*/metrics)' "$tmp/demo.out" | sed 's|(metrics http://||; s|/metrics)||')
[ ${#collectors[@]} -eq 3 ] || { cat "$tmp/demo.out" >&2; fail "expected 3 collector metrics addresses, got ${#collectors[@]}"; }
echo "collectors: ${collectors[*]}  gateway: $gw"

step "wait for /ready"
for a in "${collectors[@]}" "$gw"; do
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$a/ready")" = 200 ]; do
        kill -0 "$demo_pid" 2>/dev/null || fail "tickring demo exited"
        [ "$(date +%s)" -lt "$deadline" ] ||
            fail "$a not ready within 60 s: $(curl -s --max-time 3 "http://$a/ready")"
        sleep 0.5
    done
done

step "scrape and promtool check metrics"
# The gateway's per-ring reader samples (heartbeat, lag) appear once its
# readers have opened every ring; wait for that, then scrape for real.
until [ "$(curl -s --max-time 3 "http://$gw/metrics" | grep -c '^tickring_gateway_ring_writer_heartbeat_age_seconds{')" -ge 3 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "the gateway did not report the heartbeat of 3 rings within 60 s"
    sleep 0.5
done
scrapes=()
i=0
for a in "${collectors[@]}" "$gw"; do
    f=$tmp/scrape-$i.txt
    i=$((i + 1))
    curl -sf --max-time 5 "http://$a/metrics" >"$f" || fail "scraping http://$a/metrics"
    [ -s "$f" ] || fail "empty scrape of http://$a/metrics"
    if ! out=$(promtool check metrics <"$f" 2>&1) || [ -n "$out" ]; then
        echo "$out" >&2
        fail "promtool check metrics complains about http://$a/metrics"
    fi
    echo "http://$a/metrics: $(grep -vc '^#' "$f") samples, $(grep -c '^# TYPE' "$f") families, promtool check metrics clean"
    scrapes+=("$f")
done

step "every metric name of the rules and the dashboard is exported"
"$PY" "$REPO/tests/monitoring/names.py" "$RULES" "$DASH" "${scrapes[@]}"

step "the name check fails on a name the binaries do not export"
# Same scrapes, a rule and a panel that use a metric nobody exports: the
# check must fail and name both (a check that cannot fail checks nothing).
"$PY" - "$RULES" "$DASH" "$tmp/bad-rules.yml" "$tmp/bad-dash.json" <<'PYEOF'
import json, sys, yaml
rules, dash, bad_rules, bad_dash = sys.argv[1:]
r = yaml.safe_load(open(rules))
r["groups"][0]["rules"].append({"alert": "SelfTestAlert", "expr": "tickring_collector_no_such_total > 0"})
yaml.safe_dump(r, open(bad_rules, "w"))
d = json.load(open(dash))
p = next(p for p in d["panels"] if p.get("type") != "row")
p["targets"].append({"refId": "Z", "expr": "rate(tickring_gateway_no_such_total[5m])"})
json.dump(d, open(bad_dash, "w"))
PYEOF
if "$PY" "$REPO/tests/monitoring/names.py" "$tmp/bad-rules.yml" "$tmp/bad-dash.json" "${scrapes[@]}" >"$tmp/bad.out"; then
    fail "names.py accepted metric names that no scrape has"
fi
if ! grep -q 'NOT EXPORTED: tickring_collector_no_such_total used by .*rule SelfTestAlert' "$tmp/bad.out" ||
    ! grep -q "NOT EXPORTED: tickring_gateway_no_such_total used by .*panel .*target Z" "$tmp/bad.out"; then
    cat "$tmp/bad.out" >&2
    fail "names.py did not name the bad rule and panel"
fi
echo "names.py refuses them: $(grep -c 'NOT EXPORTED' "$tmp/bad.out") names reported"

step "OK"
