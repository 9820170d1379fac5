#!/usr/bin/env bash
# System test of the gateway's OCI image (packaging/oci/build.sh), run the
# way the Kubernetes manifests (k8s/) run it, with an OCI runtime from
# Debian (crun, or runc where cgroups are not unified) instead of a cluster:
#
#   1. builds the image (cargo build is a no-op when the release binary is
#      current) and checks it with umoci: digests, user, entrypoint;
#   2. makes rings with `tickring demo` (replay servers + collectors) in a
#      network namespace of its own, as root but with group RING_GID, so the
#      rings are 0640 root:RING_GID like on a host (group tickring);
#   3. unpacks the image into a bundle and runs the gateway in it as in the
#      pod: user 65532 with RING_GID as supplementary group, no capability,
#      no new privileges, read-only root, the ring directory bind-mounted
#      read-only at /run/tickring/rings, k8s/base/gateway.toml as the config,
#      a tokens file, in the same network namespace (its loopback only);
#   4. checks /health and /ready (200, every ring fresh), that /v1/* wants the
#      token and serves the demo's feeds, books and events (ring event
#      counters grow), and what the kernel says of the container's process;
#   5. runs the same container without the supplementary group and checks
#      /ready is 503: the ring group is what grants access.
# Everything (containers by id, the demo by pid, the namespace, the rings,
# the bundle) is removed on exit, also on failure. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
start=$SECONDS
log() { printf '[%s oci.sh] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, an OCI runtime)"
install_missing() { # install_missing COMMAND... (Debian package = command name)
  local need=() c
  for c in "$@"; do command -v "$c" >/dev/null || need+=("$c"); done
  [ ${#need[@]} -eq 0 ] && return 0
  log "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
install_missing umoci curl   # setpriv, nsenter: util-linux (Essential)

RING_GID=${RING_GID:-64123}     # stands for the host's tickring group
USER_ID=65532
TOKEN=oci-test-token-0123456789abcdef
id=tickring-oci-$$
ns=tickring-oci-$$
run=$(mktemp -d /var/tmp/tickring-oci-XXXXXX)
rings=/dev/shm/tickring-oci-$$
demo_pid=
containers=()
CRUN=(crun)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local c
  for c in "${containers[@]}"; do
    "${CRUN[@]}" kill "$c" KILL 2>/dev/null || true
    "${CRUN[@]}" delete --force "$c" 2>/dev/null || true
  done
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$demo_pid" 2>/dev/null || true
  fi
  # Anything still in the test's own network namespace was started by this
  # test (a collector orphaned by a killed demo, say).
  local left
  left=$(ip netns pids "$ns" 2>/dev/null || true)
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $left 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$rings" "$run"
  [ "$rc" -eq 0 ] || log "failed after $((SECONDS - start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. image
log "building the image"
# TICKRING_OCI_BINARY=F tests an image of another binary (build.sh --binary).
build_args=()
[ -n "${TICKRING_OCI_BINARY:-}" ] && build_args=(--binary "$TICKRING_OCI_BINARY")
archive=$(bash packaging/oci/build.sh "${build_args[@]}")
layout=${archive%.tar}
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$layout/index.json")
# The archive is the layout, byte for byte.
mkdir -p "$run/from-archive"
tar -C "$run/from-archive" -xf "$archive"
diff -r "$layout" "$run/from-archive" >/dev/null || die "$archive differs from $layout"
# umoci re-hashes every blob it reads: a wrong digest or size fails here.
umoci stat --image "$layout:$version" --json >"$run/stat.json" || die "umoci stat refused the image"
# skopeo (when installed; not pulled in for this: it brings iptables) reads
# the archive as a registry client would.
if command -v skopeo >/dev/null; then
  want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
  got=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$archive:$version") || die "skopeo cannot read $archive"
  [ "$got" = "$want" ] || die "skopeo sees manifest $got, index.json says $want"
  log "skopeo inspect oci-archive: manifest $got"
fi
log "unpacking with umoci"
umoci unpack --image "$layout:$version" "$run/bundle" >/dev/null || die "umoci unpack refused the image"
python3 - "$run/bundle/config.json" "$USER_ID" <<'PY' || die "the image's runtime config is not what the manifests expect"
import json, sys
c = json.load(open(sys.argv[1]))
p = c["process"]
uid = int(sys.argv[2])
assert p["user"]["uid"] == uid and p["user"]["gid"] == uid, p["user"]
assert p["args"] == ["/usr/bin/tickring", "gateway", "--config", "/etc/tickring/config/gateway.toml"], p["args"]
print(f"image config: user {p['user']['uid']}:{p['user']['gid']}, args {' '.join(p['args'])}", file=sys.stderr)
PY
rootfs=$run/bundle/rootfs
[ -x "$rootfs/usr/bin/tickring" ] || die "no /usr/bin/tickring in the image"
n_files=$(find "$rootfs" -type f | wc -l)
log "image $version: $(du -sh "$archive" | cut -f1) archive, $n_files files in the root file system"

# ---------------------------------------------------------------- 2. rings
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$rings"
chgrp "$RING_GID" "$rings"
chmod 0750 "$rings"
# The demo's own gateway listens on 8081 of the namespace's loopback.
demo_port=8081
log "starting tickring demo (rings in $rings, group $RING_GID) in netns $ns"
ip netns exec "$ns" setpriv --regid "$RING_GID" --clear-groups -- \
  "$rootfs/usr/bin/tickring" demo --ring-dir "$rings" --listen "127.0.0.1:$demo_port" \
  --summary-every 0 --samples "${TICKRING_FIXTURES:-$ROOT/../shared/fixtures}" \
  >"$run/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 150); do
  [ "$(find "$rings" -name '*.ring' 2>/dev/null | wc -l)" -ge 3 ] && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$run/demo.log" >&2; die "the demo exited"; }
  sleep 0.2
done
[ "$(find "$rings" -name '*.ring' | wc -l)" -ge 3 ] || { cat "$run/demo.log" >&2; die "the demo made no rings"; }
stat -c '%n %A %U:%g' "$rings"/*.ring >&2
for f in "$rings"/*.ring; do
  [ "$(stat -c %g "$f")" = "$RING_GID" ] || die "$f is not group $RING_GID"
done

# ---------------------------------------------------------------- 3. the container
printf '# written by oci.sh\n%s\n' "$TOKEN" >"$run/tokens"
chgrp "$USER_ID" "$run/tokens"
chmod 0440 "$run/tokens"
spec() { # spec OUT ADDITIONAL_GIDS(json list)
  python3 - "$run/bundle/config.json" "$1" "$2" "$ns" "$rings" "$ROOT/k8s/base/gateway.toml" "$run/tokens" <<'PY'
import json, os, sys
src, out, gids, ns, rings, cfg, tokens = sys.argv[1:]
c = json.load(open(src))
# One unpacked root file system for every container of the test.
c["root"] = {"path": os.path.join(os.path.dirname(src), c["root"]["path"]), "readonly": True}
c["hostname"] = "tickring-gateway"
p = c["process"]
p["terminal"] = False
p["user"]["additionalGids"] = json.loads(gids)
p["noNewPrivileges"] = True
p["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
p["env"] = ["PATH=/usr/bin", "RUST_LOG=info"]
bind = lambda dst, srcp: {"destination": dst, "type": "bind", "source": srcp,
                          "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
# No cgroup file system inside: the gateway reads none, and crun refuses to
# mount one on a hybrid hierarchy.
c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]
c["mounts"] += [
    bind("/run/tickring/rings", rings),
    bind("/etc/tickring/config/gateway.toml", cfg),
    bind("/etc/tickring/tokens/tokens", tokens),
]
lx = c.setdefault("linux", {})
lx["namespaces"] = [n for n in lx.get("namespaces", []) if n["type"] not in ("network", "user")]
lx["namespaces"].append({"type": "network", "path": f"/run/netns/{ns}"})
lx.pop("uidMappings", None)
lx.pop("gidMappings", None)
json.dump(c, open(out, "w"), indent=1)
PY
}
# The OCI runtime: crun where the cgroup hierarchy is unified (v2); crun
# 1.8 refuses a hybrid v1/v2 hierarchy (as on this CI machine), so runc
# there. Both from Debian; OCI_RUNTIME=crun|runc forces one.
if [ -z "${OCI_RUNTIME:-}" ]; then
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then OCI_RUNTIME=crun; else OCI_RUNTIME=runc; fi
fi
install_missing "$OCI_RUNTIME"
CRUN=("$OCI_RUNTIME")
log "OCI runtime: $("$OCI_RUNTIME" --version | head -1)"
http() { # http PATH [curl args...] -> prints "CODE BODY"
  local path=$1; shift
  ip netns exec "$ns" curl -s -m 5 -o "$run/body" -w '%{http_code}' "$@" "http://127.0.0.1:8080$path" || true
}
wait_200() { # wait_200 PATH TRIES: polls every 0.2 s; sets $code to the last answer
  code=
  for _ in $(seq "$2"); do
    code=$(http "$1")
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}
start_container() { # start_container NAME GIDS
  local name=$1
  mkdir -p "$run/$name"
  spec "$run/$name/config.json" "$2"
  "${CRUN[@]}" run --detach --bundle "$run/$name" "$name" </dev/null >"$run/$name.log" 2>&1 \
    || { cat "$run/$name.log" >&2; die "$OCI_RUNTIME could not start $name"; }
  containers+=("$name")
}
stop_container() {
  "${CRUN[@]}" kill "$1" TERM 2>/dev/null || true
  for _ in $(seq 50); do
    [ "$("${CRUN[@]}" state "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)" = stopped ] && break
    sleep 0.1
  done
  "${CRUN[@]}" delete --force "$1" 2>/dev/null || true
}

log "running the gateway image with $OCI_RUNTIME (uid $USER_ID, groups $RING_GID, no capabilities, read-only root)"
start_container "$id" "[$RING_GID]"
wait_200 /ready 100 || { cat "$run/body" >&2; echo >&2; cat "$run/$id.log" >&2; die "/ready is $code, not 200"; }
log "/ready 200: $(cat "$run/body")"
[ "$(http /health)" = 200 ] || die "/health is not 200"
http /ready >/dev/null
python3 - "$run/body" <<'PY' || die "/ready does not list the demo's three rings as fresh"
import json, sys
r = json.load(open(sys.argv[1]))
names = sorted(x["ring"] for x in r["rings"] if x["fresh"])
assert r["ready"] and names == ["demo-binance", "demo-coinbase", "demo-kraken"], r
PY

# The API wants the token; with it, it serves the demo's market data.
[ "$(http /v1/feeds)" = 401 ] || die "/v1/feeds without a token is not 401"
[ "$(http /v1/feeds -H "Authorization: Bearer wrong-token-0123456789")" = 401 ] || die "/v1/feeds with a wrong token is not 401"
auth=(-H "Authorization: Bearer $TOKEN")
[ "$(http /v1/instruments "${auth[@]}")" = 200 ] || die "/v1/instruments with the token is not 200"
python3 - "$run/body" <<'PY' || die "/v1/instruments lacks the demo's instruments"
import json, sys
ins = json.load(open(sys.argv[1]))["instruments"]
assert len(ins) >= 3, ins
print(f"/v1/instruments: {len(ins)} instruments", file=sys.stderr)
PY
[ "$(http /v1/book/kraken/BTC/USD "${auth[@]}")" = 200 ] || { cat "$run/body" >&2; die "/v1/book/kraken/BTC/USD is not 200"; }
python3 - "$run/body" <<'PY' || die "the kraken book is empty"
import json, sys
b = json.load(open(sys.argv[1]))
text = json.dumps(b)
assert '"bids"' in text and '"asks"' in text, text[:300]
print(f"/v1/book/kraken/BTC/USD: {text[:160]}...", file=sys.stderr)
PY
events() { http /metrics >/dev/null; awk '/^tickring_gateway_ring_events_total/ { s += $NF } END { print s + 0 }' "$run/body"; }
e1=$(events)
sleep 1.5
e2=$(events)
log "ring events read by the gateway: $e1 -> $e2"
[ "$e2" -gt "$e1" ] || die "the gateway in the container reads no new events"

# What the kernel says of the container's process.
pid=$("${CRUN[@]}" state "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
status=/proc/$pid/status
grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs):' "$status" >&2
awk '/^Uid:/ { exit !($2 == '"$USER_ID"' && $3 == '"$USER_ID"') }' "$status" || die "the gateway does not run as $USER_ID"
awk '/^Groups:/ { for (i = 2; i <= NF; i++) if ($i == '"$RING_GID"') f = 1; exit !f }' "$status" || die "the gateway lacks group $RING_GID"
for cap in CapEff CapPrm CapBnd; do
  awk -v k="$cap:" '$1 == k { exit !($2 ~ /^0+$/) }' "$status" || die "$cap is not empty"
done
awk '/^NoNewPrivs:/ { exit !($2 == 1) }' "$status" || die "NoNewPrivs is not set"
awk '$5 == "/" { split($6, o, ","); for (i in o) if (o[i] == "ro") f = 1 } END { exit !f }' "/proc/$pid/mountinfo" \
  || die "the container's root file system is writable"
awk '$5 == "/run/tickring/rings" { split($6, o, ","); for (i in o) if (o[i] == "ro") f = 1 } END { exit !f }' "/proc/$pid/mountinfo" \
  || die "the rings are not mounted read-only"
stop_container "$id"

# ---------------------------------------------------------------- 5. without the group
log "the same container without group $RING_GID must not be ready"
start_container "$id-nogroup" "[]"
wait_200 /health 25 || die "the gateway without the group did not start"
sleep 0.5
code=$(http /ready)
[ "$code" = 503 ] || { cat "$run/body" >&2; die "/ready without the ring group is $code, not 503"; }
log "/ready without the ring group: 503 $(cut -c1-200 "$run/body")"
stop_container "$id-nogroup"

log "oci: all checks passed in $((SECONDS - start)) s"
