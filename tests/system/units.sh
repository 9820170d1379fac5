# shellcheck shell=bash
# Offline checks of the units: systemd-analyze verify (no output at all)
# and systemd-analyze security (exposure limits), against a Debian 12 root
# with the .deb unpacked into it. Sourced by run.sh; uses DEB.

# Exposure limits (systemd-analyze security --offline=true): the test fails
# when a unit's score grows past them.
GATEWAY_MAX_EXPOSURE=1.5
COLLECTOR_MAX_EXPOSURE=2.5

_verify_unit() { # root unit
  local out
  # MANPATH: the Documentation=man:tickring(1) check runs man(1), which
  # must look in the root's pages.
  out=$(cd "$1" && MANPATH="$1/usr/share/man" systemd-analyze verify --root="$1" "$2" 2>&1)
  [ -z "$out" ] || { echo "$out"; return 1; }
}

_exposure() { # root unit max
  local out score
  out=$(systemd-analyze security --offline=true --root="$1" "$2" 2>&1) || true
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  [ -n "$score" ] || { echo "$out"; return 1; }
  echo "$2: exposure $score (limit $3)"
  printf 'exposure %s %s (limit %s)\n' "$2" "$score" "$3" >>"$WORK/exposure.txt"
  awk -v s="$score" -v m="$3" 'BEGIN { exit !(s <= m) }' || { grep -E '^✗' <<<"$out"; return 1; }
  # And systemd's own threshold (ten times the score) agrees.
  local t
  t=$(awk -v m="$3" 'BEGIN { printf "%d", m * 10 }')
  systemd-analyze security --offline=true --root="$1" --threshold="$t" "$2" >/dev/null 2>&1
}

run_units() {
  section "units: systemd-analyze verify and security (offline, Debian 12 root + .deb)"
  ts_host_prepare verify
  local root
  root=$(ts_host_root verify)
  dpkg-deb -x "$DEB" "$root"
  # The drop-in the Ansible role writes, so that its path and syntax are
  # verified too.
  mkdir -p "$root/etc/systemd/system/tickring-collector@kraken.service.d"
  printf '[Service]\nCPUAffinity=2 3\n' >"$root/etc/systemd/system/tickring-collector@kraken.service.d/cpu.conf"
  local u
  for u in tickring-collector@kraken.service tickring-gateway.service tickring-gateway.socket tickring.target; do
    check "systemd-analyze verify $u prints nothing" _verify_unit "$root" "$u"
  done
  : >"$WORK/exposure.txt"
  check "gateway exposure <= $GATEWAY_MAX_EXPOSURE" _exposure "$root" tickring-gateway.service "$GATEWAY_MAX_EXPOSURE"
  check "collector exposure <= $COLLECTOR_MAX_EXPOSURE" _exposure "$root" tickring-collector@kraken.service "$COLLECTOR_MAX_EXPOSURE"
  sed 's/^/        /' "$WORK/exposure.txt"
  ts_host_stop verify
}
