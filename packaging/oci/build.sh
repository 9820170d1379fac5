#!/usr/bin/env bash
# Builds the OCI image of the tickring gateway, offline: no registry pull, no
# container engine, no base image. The root file system holds only the
# stripped release binary, the shared libraries `ldd` says it loads (copied
# from this machine, Debian 12), /etc/passwd and /etc/group with the
# non-root user 65532 ("nonroot"), and empty mount points for the config,
# the tokens and the rings:
#
#   /usr/bin/tickring                  entrypoint: tickring gateway
#   /etc/tickring/config/gateway.toml  (mount) default --config
#   /etc/tickring/tokens/              (mount) bearer tokens
#   /run/tickring/rings/               (mount, read-only) the host's rings
#
# Output (under the repository's target/):
#   target/oci/tickring-gateway-<version>/      OCI image layout
#   target/oci/tickring-gateway-<version>.tar   the same as an archive
# tagged <version> (the crate's). Push it with skopeo, e.g.
#   skopeo copy oci-archive:target/oci/tickring-gateway-0.1.0.tar:0.1.0 \
#       docker://registry.example.internal/tickring/gateway:0.1.0
#
# Options:
#   --no-build   use the release binary as it is (default: `cargo build
#                --release`, a no-op when it is current)
#   --binary F   put F in the image instead of the release build (implies
#                --no-build)
#   --out DIR    output directory (default target/oci)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/oci
build=1
binary=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --binary) binary=$(realpath "$2"); build=0; shift 2 ;;
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { printf 'oci/build.sh: %s\n' "$*" >&2; }

meta=$(cargo metadata --format-version 1 --no-deps)
TARGET_DIR=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' <<<"$meta")
version=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])' <<<"$meta")
BIN=${binary:-$TARGET_DIR/release/tickring}
if [ "$build" = 1 ]; then
  log "cargo build --release (no-op when current)"
  cargo build --release --locked --bin tickring
fi
[ -x "$BIN" ] || { log "no $BIN: run without --no-build first"; exit 1; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

name=tickring-gateway-$version
stage=$OUT/$name.rootfs
rm -rf "$stage"
mkdir -p "$stage"/usr/bin "$stage"/etc/tickring/config "$stage"/etc/tickring/tokens \
  "$stage"/run/tickring/rings "$stage"/tmp "$stage"/proc "$stage"/sys "$stage"/dev
chmod 1777 "$stage/tmp"
strip --strip-unneeded -o "$stage/usr/bin/tickring" "$BIN"
chmod 0755 "$stage/usr/bin/tickring"

# The dynamic loader and every library, at the paths the binary asks for
# (PT_INTERP and ld.so's default directories: no ld.so.cache needed).
libs=$(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { log "ldd found no libraries in $BIN"; exit 1; }
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
done
# /lib64 -> the loader; Debian 12 has /lib64 as a real directory, so do we.
log "libraries: $(echo "$libs" | tr '\n' ' ')"

cat >"$stage/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
nonroot:x:65532:65532:tickring gateway:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$stage/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
chmod 0644 "$stage/etc/passwd" "$stage/etc/group"
cp packaging/etc/gateway.toml "$stage/etc/tickring/gateway.toml.example"
chmod 0644 "$stage/etc/tickring/gateway.toml.example"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
digest=$(python3 packaging/oci/oci_image.py --rootfs "$stage" \
  --layout "$OUT/$name" --archive "$OUT/$name.tar" --tag "$version" \
  --user 65532:65532 \
  --entrypoint /usr/bin/tickring --entrypoint gateway \
  --cmd=--config --cmd=/etc/tickring/config/gateway.toml \
  --env PATH=/usr/bin \
  --port 8080/tcp \
  --label org.opencontainers.image.title=tickring-gateway \
  --label org.opencontainers.image.description="tickring gateway: WebSocket/REST/metrics over the host's market-data rings" \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.revision="$revision")
rm -rf "$stage"
log "image tickring/gateway:$version, manifest $digest"
log "layout  $OUT/$name"
log "archive $OUT/$name.tar ($(du -h "$OUT/$name.tar" | cut -f1))"
echo "$OUT/$name.tar"
