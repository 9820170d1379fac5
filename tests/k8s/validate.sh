#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests (k8s/), no cluster and no
# network (after the first venv install):
#   1. renders k8s/base and every overlay with `kubectl kustomize`;
#   2. validates every object: built-in kinds with kubernetes-validate
#      --strict (Kubernetes 1.37 schemas), monitoring.coreos.com objects
#      against the CRDs kept in tests/k8s/crds/ (any other custom kind fails);
#      every pod template against the restricted Pod Security Standard and
#      the house rules, in a namespace that enforces restricted;
#   3. checks the gateway's config agrees with the DaemonSet's mounts and
#      ports (tests/k8s/gateway_wiring.py);
#   4. shows the validators can fail: tests/k8s/cases/good-*.yaml must pass,
#      bad-*.yaml must fail for the reasons their "# expect:" lines name, and
#      each mutation in cases/mutations.yaml (one change to the rendered base)
#      must be refused.
# Exit 0 when all holds. Needs python3 (venv in $TICKRING_CI_CACHE).
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
log() { printf '[validate.sh] %s\n' "$*" >&2; }

PY=$(bash tests/python/setup.sh tests/k8s/requirements.txt k8s)
KUBECTL=$(dirname "$PY")/kubectl
CRDS=tests/k8s/crds
tmp=$(mktemp -d /tmp/tickring-k8s-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Contract with monitoring/: k8s/base/prometheusrule.yaml is generated there;
# once it exists it must be part of the base.
if [ -f k8s/base/prometheusrule.yaml ] &&
   ! grep -qE '^\s*-\s*prometheusrule\.yaml\s*$' k8s/base/kustomization.yaml; then
  log "FAIL: k8s/base/prometheusrule.yaml exists but is not listed in k8s/base/kustomization.yaml resources"
  exit 1
fi

rendered=()
for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  name=$(echo "$dir" | tr / -)
  "$KUBECTL" kustomize "$dir" >"$tmp/$name.yaml"
  log "rendered $dir: $(grep -c '^kind:' "$tmp/$name.yaml") objects"
  rendered+=("$tmp/$name.yaml")
done
# Every kind the manifests must carry (the issue's list), in every render.
for f in "${rendered[@]}"; do
  for kind in Namespace DaemonSet Service NetworkPolicy PodDisruptionBudget ServiceMonitor ConfigMap PersistentVolume PersistentVolumeClaim; do
    grep -qx "kind: $kind" "$f" || { log "FAIL: no $kind in $(basename "$f")"; exit 1; }
  done
  if [ -f k8s/base/prometheusrule.yaml ]; then
    grep -qx "kind: PrometheusRule" "$f" || { log "FAIL: no PrometheusRule in $(basename "$f")"; exit 1; }
  fi
done

log "manifests: kubernetes-validate --strict, CRD schemas, restricted profile"
"$PY" tests/k8s/validate.py --crds "$CRDS" "${rendered[@]}" tests/k8s/cases/good-*.yaml
log "the validator refuses what it must (negative cases)"
"$PY" tests/k8s/validate.py --crds "$CRDS" --expect-fail tests/k8s/cases/bad-*.yaml
"$PY" tests/k8s/validate.py --crds "$CRDS" --mutations tests/k8s/cases/mutations.yaml "$tmp/k8s-base.yaml"
log "the gateway's config, the mounts and the ports agree"
"$PY" tests/k8s/gateway_wiring.py "${rendered[@]}"
# ...and the wiring check sees a mismatch (one change each to the base).
wiring_must_fail() { # NAME SED-EXPRESSION
  sed "$2" "$tmp/k8s-base.yaml" >"$tmp/wiring-$1.yaml"
  cmp -s "$tmp/k8s-base.yaml" "$tmp/wiring-$1.yaml" && { log "FAIL: wiring case $1 changed nothing"; exit 1; }
  if "$PY" tests/k8s/gateway_wiring.py "$tmp/wiring-$1.yaml" >"$tmp/wiring-$1.out"; then
    log "FAIL: wiring case $1 was not refused"; exit 1
  fi
  log "ok: wiring case $1 refused: $(cut -d: -f2- "$tmp/wiring-$1.out" | head -1)"
}
wiring_must_fail ring-mount 's|mountPath: /run/tickring/rings|mountPath: /run/tickring/ring|'
wiring_must_fail listen-port 's|listen = "0.0.0.0:8080"|listen = "0.0.0.0:9090"|'
wiring_must_fail tokens-path 's|tokens_file = "/etc/tickring/tokens/tokens"|tokens_file = "/etc/tickring/gateway.tokens"|'
wiring_must_fail writable-rings 's|readOnly: true|readOnly: false|'
log "all good in $((SECONDS - start)) s"
