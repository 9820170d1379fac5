#!/usr/bin/env bash
# Builds the tickring packages into target/packages/:
#   tickring_<version>-1_amd64.deb   (cargo-deb)
#   tickring-<version>-1.x86_64.rpm  (cargo-generate-rpm)
# from one release build, the units in systemd/ and the files in packaging/.
#
#   packaging/build.sh                      # both packages
#   packaging/build.sh --deb-version 0.1.0-2  # one more .deb of the same build
#                                             # with another version (the
#                                             # system test's upgrade)
#
# Options:
#   --deb-version V   build only the .deb, with version V, from the binary
#                     already built (no cargo build)
#   --rpm-release R   build only the .rpm, with release R, likewise
#   --no-build        reuse target/release/tickring as it is
#   --out DIR         where the packages go (default target/packages)
#
# Installs cargo-deb and cargo-generate-rpm (pinned versions, cargo install
# --locked) into $TICKRING_CI_CACHE/cargo-tools when they are missing.
# Sample captures come from ${TICKRING_FIXTURES:-../shared/fixtures} and are
# copied into the package at build time, never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CARGO_DEB_VERSION=3.8.0
GENERATE_RPM_VERSION=0.21.1
CACHE=${TICKRING_CI_CACHE:-/var/cache/tickring-ci}
TOOLS=$CACHE/cargo-tools
FIXTURES=${TICKRING_FIXTURES:-$ROOT/../shared/fixtures}
OUT=$ROOT/target/packages
STAGE=$ROOT/target/packaging

deb_version=
rpm_release=
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --deb-version) deb_version=$2; build=0; shift 2 ;;
    --rpm-release) rpm_release=$2; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf 'build.sh: %s\n' "$*" >&2; }

ensure_tool() { # name version
  local name=$1 version=$2
  if "$TOOLS/bin/$name" --version 2>/dev/null | grep -qx "$name $version"; then
    return
  fi
  log "installing $name $version into $TOOLS (once per machine)"
  mkdir -p "$TOOLS"
  cargo install --locked --quiet --version "$version" --root "$TOOLS" "$name"
}
ensure_tool cargo-deb "$CARGO_DEB_VERSION"
ensure_tool cargo-generate-rpm "$GENERATE_RPM_VERSION"

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release/tickring
if [ "$build" = 1 ]; then
  log "cargo build --release"
  cargo build --release --locked --bin tickring
fi
[ -x "$BIN" ] || { log "no $BIN: run without --no-build/--deb-version first"; exit 1; }

# Set only now: cargo build would rebuild crates whose build scripts watch
# SOURCE_DATE_EPOCH whenever it changes.
export PATH=$TOOLS/bin:$PATH
# Reproducible timestamps: the last commit's time.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$OUT"
if [ -z "$deb_version$rpm_release" ]; then
  log "staging generated files in $STAGE"
  rm -rf "$STAGE"
  mkdir -p "$STAGE/bin" "$STAGE/man" "$STAGE/completions" "$STAGE/samples"
  # The release profile keeps line tables for profiling; the packages ship a
  # stripped binary (cargo-deb strips its own copy the same way).
  strip --strip-unneeded -o "$STAGE/bin/tickring" "$BIN"
  "$BIN" man --out-dir "$STAGE/man" >/dev/null
  gzip -9n "$STAGE"/man/*.1
  "$BIN" completions bash > "$STAGE/completions/tickring.bash"
  "$BIN" completions zsh > "$STAGE/completions/_tickring"
  "$BIN" completions fish > "$STAGE/completions/tickring.fish"
  [ -d "$FIXTURES" ] || { log "no sample captures in $FIXTURES (set TICKRING_FIXTURES)"; exit 1; }
  for ex in binance coinbase kraken; do
    mkdir -p "$STAGE/samples/$ex"
    cp "$FIXTURES/$ex/"*.jsonl "$STAGE/samples/$ex/"
  done
  chmod -R u=rwX,go=rX "$STAGE"
fi
[ -d "$STAGE/man" ] || { log "nothing staged in $STAGE: run without --deb-version first"; exit 1; }

version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
if [ -n "$rpm_release" ]; then
  log "cargo generate-rpm (release $rpm_release)"
  cargo generate-rpm --output "$OUT/" --source-date "$SOURCE_DATE_EPOCH" \
    --set-metadata "release = \"$rpm_release\"" >/dev/null
  ls -1 "$OUT"/tickring-"$version"-"$rpm_release".*.rpm
  exit 0
fi

deb_args=(--no-build --locked --strip --quiet --output "$OUT/")
[ -n "$deb_version" ] && deb_args+=(--deb-version "$deb_version")
log "cargo deb ${deb_args[*]}"
cargo deb "${deb_args[@]}" >/dev/null
if [ -n "$deb_version" ]; then
  ls -1 "$OUT"/tickring_"${deb_version#*:}"_*.deb
  exit 0
fi

log "cargo generate-rpm"
cargo generate-rpm --output "$OUT/" --source-date "$SOURCE_DATE_EPOCH" >/dev/null
ls -1 "$OUT"/tickring_"$version"-1_*.deb "$OUT"/tickring-"$version"-1.*.rpm
