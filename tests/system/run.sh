#!/usr/bin/env bash
# The system test of what ships (called by .ci/system-test, as root):
#   1. builds the .deb and .rpm (packaging/build.sh), plus a .deb with a
#      newer version and an .rpm with a newer release of the same build;
#   2. lint: lintian, rpm -K/-qpl/--scripts, rpmlint;
#   3. units: systemd-analyze verify and security against a Debian 12 root;
#   4. the .deb in a booted Debian 12 host (systemd-nspawn): install, run a
#      collector against a replay server and the gateway, upgrade,
#      downgrade, remove, purge; and an install into a chroot, then booted;
#   5. the .rpm into a scratch root: install, upgrade, erase.
# Steps that need `tickring collect`, `replay` or `gateway` print
# "SKIPPED: ..." when the binary lacks them; everything else still runs.
#
# Options: --no-build (use the packages already in target/packages),
#          --only lint|units|deb|rpm (repeatable).
# Env: TICKRING_CI_CACHE (cargo tools, root file system), TICKRING_FIXTURES,
#      TS_KEEP_LOGS=1 (keep host logs of a failed run).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
HERE=$REPO/tests/system
. "$HERE/lib.sh"
. "$HERE/checks.sh"
. "$HERE/lint.sh"
. "$HERE/units.sh"
. "$HERE/deb.sh"
. "$HERE/rpm.sh"

build=1
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --only) only+=("$2"); shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }

FIXTURES=${TICKRING_FIXTURES:-$REPO/../shared/fixtures}
export TICKRING_FIXTURES=$FIXTURES
OUT=$REPO/target/packages

section "setup"
ts_need_tools
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v rpm >/dev/null || need+=(rpm)
command -v rpmlint >/dev/null || need+=(rpmlint)
command -v curl >/dev/null || need+=(curl)
command -v man >/dev/null || need+=(man-db)
if [ ${#need[@]} -gt 0 ]; then
  ts_log "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VERSION=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
DEB_VERSION=$VERSION-1
DEB_NEW_VERSION=$VERSION-1+systest
if [ "$build" = 1 ]; then
  t0=$SECONDS
  rm -f "$OUT"/tickring[_-]*
  packaging/build.sh >/dev/null
  packaging/build.sh --deb-version "$DEB_NEW_VERSION" >/dev/null
  packaging/build.sh --rpm-release 2 >/dev/null
  echo "packages built in $((SECONDS - t0)) s"
fi
DEB=$OUT/tickring_${DEB_VERSION}_amd64.deb
DEB_NEW=$OUT/tickring_${DEB_NEW_VERSION}_amd64.deb
RPM=$(ls "$OUT"/tickring-"$VERSION"-1.*.rpm)
RPM_NEW=$(ls "$OUT"/tickring-"$VERSION"-2.*.rpm)
for f in "$DEB" "$DEB_NEW" "$RPM" "$RPM_NEW"; do
  [ -f "$f" ] || ts_die "missing package $f"
  echo "package: ${f#"$REPO"/}"
done

ts_init systest
# shellcheck disable=SC2034 # used by the sourced parts
WORK=$TS_RUN
t_root=$SECONDS
ts_rootfs >/dev/null
echo "root file system ready in $((SECONDS - t_root)) s"

want lint && run_lint
want units && run_units
want deb && { run_deb; run_deb_offline; }
want rpm && run_rpm

section "done in $SECONDS s"
summary
