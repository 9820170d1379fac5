# shellcheck shell=bash
# The .deb the way users meet it: apt install into a booted Debian 12 host,
# run a collector against a replay server inside the host and the gateway,
# upgrade, downgrade, remove, purge; then an install into a chroot where
# systemd does not run, booted afterwards. Sourced by run.sh; uses DEB,
# DEB_NEW, DEB_VERSION, DEB_NEW_VERSION.

H=deb
PK=/var/tmp/pkgs
REPLAY_PORT=9443
RING=kraken
FEED_CONF=/etc/tickring/feeds/kraken.toml
HAVE_COLLECT=0
HAVE_GATEWAY=0
HAVE_REPLAY=0
RUNNING=0 # collector, replay and tail are running
HUGE=0    # huge pages were reserved for the ring

hsh() { ts_host_sh "$H" "$@"; }

# systemctl show values that the unit files set (what "the files say"):
# checked on the loaded units, and on the running processes below.
COLLECTOR_PROPS=(
  "Type=notify" "NotifyAccess=main" "Restart=on-failure"
  "User=tickring" "Group=tickring" "UMask=0027" "LimitMEMLOCK=infinity"
  "AmbientCapabilities=cap_ipc_lock cap_sys_nice"
  "CapabilityBoundingSet=cap_ipc_lock cap_sys_nice"
  "NoNewPrivileges=yes" "ProtectSystem=strict"
  "ReadWritePaths=-/dev/shm/tickring -/dev/hugepages/tickring"
  "ProtectHome=yes" "PrivateTmp=yes" "PrivateDevices=yes" "PrivateMounts=yes"
  "ProtectKernelTunables=yes" "ProtectKernelModules=yes" "ProtectKernelLogs=yes"
  "ProtectControlGroups=yes" "ProtectClock=yes" "ProtectHostname=yes"
  "ProtectProc=invisible" "ProcSubset=pid" "RemoveIPC=no" "RestrictRealtime=no"
  "PrivateUsers=no" "PrivateNetwork=no" "RestrictNamespaces=yes" "RestrictSUIDSGID=yes"
  "LockPersonality=yes" "MemoryDenyWriteExecute=yes"
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "SystemCallArchitectures=native"
  "SystemCallErrorNumber=1" "StartLimitBurst=5" "StartLimitIntervalUSec=2min"
  "RequiresMountsFor~=/dev/hugepages/tickring /dev/shm/tickring"
)
GATEWAY_PROPS=(
  "Type=notify" "DynamicUser=yes" "SupplementaryGroups=tickring" "UMask=0077"
  "CapabilityBoundingSet=" "AmbientCapabilities=" "NoNewPrivileges=yes"
  "ProtectSystem=strict" "ReadOnlyPaths=-/dev/shm -/dev/hugepages" "ProtectHome=yes"
  "PrivateTmp=yes" "PrivateDevices=yes" "PrivateNetwork=yes" "PrivateIPC=yes"
  "PrivateUsers=yes" "PrivateMounts=yes" "RestrictAddressFamilies=AF_UNIX"
  "IPAddressDeny~=0.0.0.0/0 ::/0" "ProtectProc=invisible" "ProcSubset=pid"
  "RestrictRealtime=yes" "RestrictNamespaces=yes" "MemoryDenyWriteExecute=yes"
  "Requires~=tickring-gateway.socket"
)
SOCKET_PROPS=("Listen=127.0.0.1:8080 (Stream)" "Accept=no" "NoDelay=yes" "Backlog=4096")

_props() { # unit prop=value...
  local unit=$1; shift
  local pv p want got rc=0
  for pv in "$@"; do
    # P=V: equal; P~=V: every word of V is in the value (in any order;
    # systemd adds its own).
    p=${pv%%=*}; want=${pv#*=}
    local contains=0
    [ "${p%\~}" != "$p" ] && { contains=1; p=${p%\~}; }
    got=$(hsh "systemctl show -p $p --value $unit")
    if [ "$contains" = 1 ]; then
      local w
      for w in $want; do
        [[ " $got " == *" $w "* ]] || { echo "$unit $p: '$w' not in '$got'"; rc=1; }
      done
    else
      [ "$got" = "$want" ] || { echo "$unit $p: expected '$want', got '$got'"; rc=1; }
    fi
  done
  return $rc
}

_status_is() { [ "$(hsh "dpkg-query -W -f='\${Status} \${Version}' tickring 2>/dev/null")" = "$1" ]; }

_user_ok() {
  hsh 'set -e; IFS=: read -r n _ uid gid _ home shell < <(getent passwd tickring)
       [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/tickring ] && [ "$shell" = /usr/sbin/nologin ]
       [ "$(getent group tickring | cut -d: -f3)" = "$gid" ]'
}

_dirs_ok() {
  hsh 'for d in /var/lib/tickring /dev/shm/tickring /dev/hugepages/tickring; do
         [ "$(stat -c "%a %U %G" $d)" = "750 tickring tickring" ] || { stat -c "%n %a %U %G" $d; exit 1; }
       done'
}

_listening_only_loopback() {
  local l
  l=$(hsh "ss -Hltn 'sport = :8080'" | awk '{print $4}')
  [ "$l" = 127.0.0.1:8080 ] || { echo "listening: $l"; return 1; }
  # From this machine to the host's own address (the test's namespace):
  # refused (curl exit 7), never accepted.
  local rc=0
  curl -s -o /dev/null --max-time 3 "http://$(ts_host_ip "$H"):8080/ready" || rc=$?
  [ "$rc" -eq 7 ] || { echo "curl to $(ts_host_ip "$H"):8080 exited $rc, expected 7 (refused)"; return 1; }
}

_stat_json() { hsh "tickring stat --json $RING"; }
_stat_field() { # python expression on j
  _stat_json | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

_ring_fills() {
  local c1 c2
  c1=$(_stat_field 'j["cursor"]') || return 1
  sleep 1
  c2=$(_stat_field 'j["cursor"]') || return 1
  echo "cursor $c1 -> $c2, writer $(_stat_field 'j["writer"]["state"], "epoch", j["writer"]["epoch"], "pid", j["writer"]["pid"]'), file $(_stat_field 'j["path"]')"
  [ "$c1" -gt 0 ] && [ "$c2" -gt "$c1" ] && [ "$(_stat_field 'j["writer"]["state"]')" = running ]
}

_ring_perms() {
  hsh "set -e; f=\$(tickring stat --json $RING | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"path\"])')
       [ \"\$(stat -c '%a %U %G' \$f)\" = '640 tickring tickring' ] || { stat -c '%n %a %U %G' \$f; exit 1; }
       gid=\$(getent group tickring | cut -d: -f3)
       # A member of group tickring reads it; anyone else cannot.
       setpriv --reuid=65534 --regid=\$gid --clear-groups tickring stat $RING >/dev/null
       ! setpriv --reuid=65534 --regid=65534 --clear-groups tickring stat $RING >/dev/null 2>&1"
}

_ready_200() {
  local code
  code=$(hsh "curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://127.0.0.1:8080/ready") || true
  [ "$code" = 200 ]
}

_clean_status() { # units...
  local u rc=0
  for u in "$@"; do
    hsh "systemctl is-active --quiet $u" || { hsh "systemctl status --no-pager $u | tail -20"; rc=1; }
    [ "$(hsh "systemctl show -p NRestarts --value $u")" = 0 ] || { echo "$u restarted"; rc=1; }
    [ "$(hsh "systemctl show -p Result --value $u")" = success ] || { echo "$u result not success"; rc=1; }
  done
  local errs
  errs=$(hsh "journalctl -q --no-pager -p err $(printf -- ' -u %s' "$@")")
  [ -z "$errs" ] || { echo "errors in the journal:"; echo "$errs"; rc=1; }
  return $rc
}

_collector_process() {
  hsh 'set -e
    pid=$(systemctl show -p MainPID --value tickring-collector@kraken.service)
    [ "$pid" -gt 0 ]
    uid=$(id -u tickring)
    s=/proc/$pid/status
    grep -q "^Uid:[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid\$" $s || { grep Uid $s; exit 1; }
    for c in CapEff CapPrm CapAmb CapBnd; do
      grep -qx "$c:[[:space:]]*0000000000804000" $s || { grep "^$c" $s; exit 1; }
    done
    grep -qx "NoNewPrivs:[[:space:]]*1" $s
    grep -qx "Seccomp:[[:space:]]*2" $s
    [ "$(systemctl show -p WatchdogUSec --value tickring-collector@kraken.service)" = 10s ]
    grep -qx "Cpus_allowed_list:[[:space:]]*0" $s || { grep Cpus_allowed_list $s; exit 1; }
    # The ring is locked in memory (CAP_IPC_LOCK lifts RLIMIT_MEMLOCK), as
    # the collector reports (VmLck does not count huge pages).
    m=$(curl -s --max-time 3 http://127.0.0.1:9101/metrics | grep "^tickring_collector_memory_locked")
    [ "${m##* }" = 1 ] || { echo "metrics: ${m:-no tickring_collector_memory_locked}"; exit 1; }
    # LimitMEMLOCK=infinity, where PID 1 may raise limits (CAP_SYS_RESOURCE:
    # every real host; this machine withholds it from its containers).
    if grep -q "^CapBnd:.*" /proc/1/status && [ $(( 0x$(awk "/^CapBnd:/ {print \$2}" /proc/1/status) >> 24 & 1 )) = 1 ]; then
      grep -q "^Max locked memory[[:space:]]*unlimited[[:space:]]*unlimited" /proc/$pid/limits || { grep locked /proc/$pid/limits; exit 1; }
    fi
    [ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ]
    # ProtectSystem=strict: / is read-only in its namespace; the ring directory is not.
    awk "\$5 == \"/\" { print \$6 }" /proc/$pid/mountinfo | grep -q "^ro"
    for d in /dev/shm/tickring /dev/hugepages/tickring; do
      awk -v d=$d "\$5 == d { print \$6 }" /proc/$pid/mountinfo | grep -q "^rw" || { echo "$d is not a writable mount"; exit 1; }
    done'
}

_ring_on_hugepages() {
  local p h
  p=$(_stat_field 'j["path"]') && h=$(_stat_field 'j["huge_pages"]') || return 1
  echo "$p huge_pages=$h"
  [ "$h" = True ] && [ "${p#/dev/hugepages/tickring/}" != "$p" ]
}

_gateway_process() {
  hsh 'set -e
    pid=$(systemctl show -p MainPID --value tickring-gateway.service)
    [ "$pid" -gt 0 ]
    s=/proc/$pid/status
    uid=$(awk "/^Uid:/ {print \$2}" $s)
    [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || { echo "gateway uid $uid is not a dynamic user"; exit 1; }
    for c in CapEff CapPrm CapAmb CapBnd; do
      grep -qx "$c:[[:space:]]*0000000000000000" $s || { grep "^$c" $s; exit 1; }
    done
    grep -qx "NoNewPrivs:[[:space:]]*1" $s
    grep -qx "Seccomp:[[:space:]]*2" $s
    gid=$(getent group tickring | cut -d: -f3)
    grep "^Groups:" $s | grep -qw "$gid" || { grep Groups $s; echo "not in group tickring ($gid)"; exit 1; }
    [ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/1/ns/net)" ]
    # LoadCredential= with the SetCredential= fallback: no tokens file, the
    # credential holds only a comment.
    grep -q "^# no tokens file" /run/credentials/tickring-gateway.service/tokens'
}

_invocation() { hsh "systemctl show -p InvocationID --value $1"; }

_tail_reattached() { # lines of the tail's output
  # After the collector's restart the reader saw a new writer epoch and
  # events after it.
  hsh "python3 - <<'EOF'
import json, sys
lines = [json.loads(l) for l in open('/var/tmp/tail.jsonl') if l.strip()]
idx = [i for i, l in enumerate(lines) if l.get('kind') == 'writer_restarted']
if not idx:
    sys.exit('no writer_restarted line in %d lines' % len(lines))
after = len(lines) - idx[-1] - 1
print('%d lines, %d writer restarts, %d events after the last' % (len(lines), len(idx), after))
sys.exit(0 if after > 0 else 1)
EOF"
}

# After an upgrade or a downgrade to VERSION.
_after_version_change() {
  local label=$1 version=$2 c_inv=$3 g_inv=$4 s_ts=$5 epoch=$6
  check "$label: dpkg has tickring $version installed" _status_is "install ok installed $version"
  check "$label: the changed $FEED_CONF is kept, no .dpkg-* copies" \
    hsh "grep -q '^endpoint = \"ws://127.0.0.1:$REPLAY_PORT/v2\"' $FEED_CONF && ! ls /etc/tickring/feeds/*.dpkg-* 2>/dev/null"
  check "$label: the gateway socket stayed up (never restarted: no refused connection)" \
    _check_eq "active $s_ts" hsh "echo \$(systemctl is-active tickring-gateway.socket) \$(systemctl show -p ActiveEnterTimestampMonotonic --value tickring-gateway.socket)"
  if [ "$RUNNING" = 1 ]; then
    check "$label: the running collector was restarted (new invocation, active)" \
      hsh "[ \"\$(systemctl show -p InvocationID --value tickring-collector@kraken)\" != $c_inv ] && systemctl is-active --quiet tickring-collector@kraken"
    check "$label: the ring is still readable, by a new writer epoch, and fills" \
      _check_new_epoch "$epoch"
    check "$label: a reader running across the restart reattached" ts_wait 20 "tail reattach" _tail_reattached
    if [ "$HAVE_GATEWAY" = 1 ]; then
      check "$label: the running gateway was restarted (new invocation)" \
        hsh "[ \"\$(systemctl show -p InvocationID --value tickring-gateway.service)\" != $g_inv ]"
      check "$label: /ready answers 200 again (gateway reattached to the ring)" ts_wait 30 "/ready 200" _ready_200
    fi
  else
    check "$label: no collector was started by the upgrade" \
      hsh "! systemctl is-active --quiet tickring-collector@kraken"
  fi
  check "$label: units still load" _units_loaded
}

_check_new_epoch() {
  local old=$1
  ts_wait 20 "new writer epoch" _epoch_differs "$old" || return 1
  _ring_fills
}
_epoch_differs() { local e; e=$(_stat_field 'j["writer"]["epoch"]') && [ "$e" != "$1" ] && [ "$(_stat_field 'j["writer"]["state"]')" = running ]; }

_units_loaded() {
  local u rc=0
  for u in tickring-collector@kraken.service tickring-gateway.service tickring-gateway.socket tickring.target; do
    [ "$(hsh "systemctl show -p LoadState --value $u")" = loaded ] || { echo "$u not loaded"; rc=1; }
  done
  return $rc
}

_snapshot() { # prints: collector-invocation gateway-invocation socket-ts epoch
  local c g s e=-
  c=$(_invocation tickring-collector@kraken.service); c=${c:-none}
  g=$(_invocation tickring-gateway.service); g=${g:-none}
  s=$(hsh "systemctl show -p ActiveEnterTimestampMonotonic --value tickring-gateway.socket")
  [ "$RUNNING" = 1 ] && e=$(_stat_field 'j["writer"]["epoch"]')
  echo "$c $g $s $e"
}

_start_services() {
  hsh "cat > /etc/systemd/system/tickring-test-replay.service <<EOF
[Unit]
Description=Kraken replay server for the system test
[Service]
ExecStart=/usr/bin/tickring replay --exchange kraken --file /usr/share/tickring/samples/kraken/v2_session_book_d10.jsonl --listen 127.0.0.1:$REPLAY_PORT --pace 100 --loop
EOF
cat > /etc/systemd/system/tickring-test-tail.service <<EOF
[Unit]
Description=A ring reader that lives across collector restarts
[Service]
ExecStart=/bin/sh -c 'exec /usr/bin/tickring tail $RING --from newest --json > /var/tmp/tail.jsonl'
EOF
systemctl daemon-reload"
  check "replay server (tickring replay, kraken sample) starts and listens" \
    hsh "systemctl start tickring-test-replay && for i in \$(seq 50); do ss -Hltn 'sport = :$REPLAY_PORT' | grep -q . && exit 0; sleep 0.2; done; exit 1"
  # Huge pages for the ring (the hosts share this machine's pool): the
  # collector then maps it from /dev/hugepages/tickring through its private
  # /dev (PrivateDevices=yes).
  if ts_reserve_hugepages 8; then HUGE=1; else ts_log "no huge pages: the ring goes to /dev/shm"; fi
  check "tickring-collector@kraken starts: READY=1 within TimeoutStartSec" \
    hsh "timeout 100 systemctl enable --now tickring-collector@kraken.service"
  RUNNING=1
  check "the ring fills (tickring stat: cursor grows, writer running)" ts_wait 20 "ring to fill" _ring_fills
  if [ "$HUGE" = 1 ]; then
    check "the ring is on huge pages in /dev/hugepages/tickring (reachable under PrivateDevices=yes)" _ring_on_hugepages
  else
    skip "ring on huge pages (none could be reserved on this machine)"
  fi
  check "ring file 0640 tickring:tickring; group members read it, others cannot" _ring_perms
  check "running collector: uid tickring, caps exactly IPC_LOCK+SYS_NICE, NoNewPrivs, seccomp, watchdog 10s, CPU 0 from cpu.conf, ring locked in memory, / read-only, ring dirs writable" _collector_process
  hsh "[ \$(( 0x\$(awk '/^CapBnd:/ {print \$2}' /proc/1/status) >> 24 & 1 )) = 1 ]" ||
    skip "LimitMEMLOCK=infinity at run time (this machine withholds CAP_SYS_RESOURCE from containers, so their systemd cannot raise limits; the setting itself is checked above)"
  check "a reader (tickring tail) starts" hsh "systemctl start tickring-test-tail && sleep 1 && systemctl is-active --quiet tickring-test-tail"
  if [ "$HAVE_GATEWAY" = 1 ]; then
    check "/ready answers 200 through the socket (activates the gateway)" ts_wait 30 "/ready 200" _ready_200
    check "running gateway: dynamic uid, group tickring, no capability, NoNewPrivs, seccomp, private network" _gateway_process
    check "systemctl status clean: collector and gateway active, no restart, no error in the journal" \
      _clean_status tickring-collector@kraken.service tickring-gateway.service
  else
    skip "gateway /ready, gateway process hardening (tickring gateway not in this build)"
    check "systemctl status clean: collector active, no restart, no error in the journal" \
      _clean_status tickring-collector@kraken.service
  fi
}

run_deb() {
  section ".deb in a booted Debian 12 host"
  ts_host_boot "$H"
  ts_host_cp "$H" "$DEB" "$PK/"
  ts_host_cp "$H" "$DEB_NEW" "$PK/"
  local deb_old deb_new
  deb_old=$PK/$(basename "$DEB")
  deb_new=$PK/$(basename "$DEB_NEW")

  # 1. Fresh install.
  check "apt install ./$(basename "$DEB")" hsh "apt-get install -y -q $deb_old"
  check "dpkg has tickring $DEB_VERSION installed" _status_is "install ok installed $DEB_VERSION"
  check "system user and group tickring (uid < 1000, home /var/lib/tickring, nologin)" _user_ok
  check "/var/lib/tickring, /dev/shm/tickring, /dev/hugepages/tickring: 0750 tickring:tickring" _dirs_ok
  check "units load" _units_loaded
  check_eq "enabled: tickring.target and the socket; not the gateway service nor a collector" \
    "enabled enabled disabled disabled" hsh "echo \$(systemctl is-enabled tickring.target tickring-gateway.socket tickring-gateway.service tickring-collector@kraken.service)"
  check_eq "the socket is active, nothing else started" "active inactive inactive" \
    hsh "echo \$(systemctl is-active tickring-gateway.socket tickring-gateway.service tickring-collector@kraken.service)"
  check "the socket listens on 127.0.0.1:8080 only (refused on the host's address)" _listening_only_loopback
  check "collector unit settings are what the file says (systemctl show)" _props tickring-collector@kraken.service "${COLLECTOR_PROPS[@]}"
  check "gateway unit settings are what the file says (systemctl show)" _props tickring-gateway.service "${GATEWAY_PROPS[@]}"
  check "socket settings (systemctl show)" _props tickring-gateway.socket "${SOCKET_PROPS[@]}"
  check "man page, completions, samples installed" \
    hsh "zcat /usr/share/man/man1/tickring.1.gz | grep -q '^.SH FILES' && bash -n /usr/share/bash-completion/completions/tickring && [ \$(ls /usr/share/tickring/samples/*/*.jsonl | wc -l) -eq $(find "$FIXTURES" -mindepth 2 -name '*.jsonl' | wc -l) ]"
  check "tickring validate accepts the shipped feed configs (as user tickring)" \
    hsh "for f in /etc/tickring/feeds/*.toml; do setpriv --reuid=tickring --regid=tickring --clear-groups tickring validate --config \$f || exit 1; done"

  hsh "tickring help collect" >/dev/null 2>&1 && HAVE_COLLECT=1
  hsh "tickring help gateway" >/dev/null 2>&1 && HAVE_GATEWAY=1
  hsh "tickring help replay" >/dev/null 2>&1 && HAVE_REPLAY=1

  # The admin's changes: the feed points at the replay server inside the
  # host (a changed conffile, which upgrades must keep), and the CPU
  # affinity drop-in the Ansible role writes.
  # The gateway serves that ring by name (looked up on huge pages, then in
  # /dev/shm), as the Ansible role configures it.
  hsh "sed -i 's|^# endpoint = .*|endpoint = \"ws://127.0.0.1:$REPLAY_PORT/v2\"|' $FEED_CONF
       sed -i 's|^ring_dir = .*|rings = [\"$RING\"]|' /etc/tickring/gateway.toml
       mkdir -p /etc/systemd/system/tickring-collector@kraken.service.d
       printf '[Service]\nCPUAffinity=0\n' > /etc/systemd/system/tickring-collector@kraken.service.d/cpu.conf
       systemctl daemon-reload"
  check "the drop-in cpu.conf sets the collector's CPUAffinity" _props tickring-collector@kraken.service "CPUAffinity=0"

  if [ "$HAVE_COLLECT" = 1 ] && [ "$HAVE_REPLAY" = 1 ]; then
    _start_services
  else
    local missing=()
    [ "$HAVE_COLLECT" = 1 ] || missing+=(collect)
    [ "$HAVE_REPLAY" = 1 ] || missing+=(replay)
    skip "collector against the replay server, ring filling, running-process hardening, readers across upgrades (tickring ${missing[*]} not in this build)"
    [ "$HAVE_GATEWAY" = 1 ] || skip "gateway /ready (tickring gateway not in this build)"
  fi

  # 2. Upgrade to a newer build; 3. downgrade back (a rollback).
  local snap
  snap=$(_snapshot)
  check "apt upgrade to $DEB_NEW_VERSION" hsh "apt-get install -y -q $deb_new"
  # shellcheck disable=SC2086
  _after_version_change "upgrade" "$DEB_NEW_VERSION" $snap
  snap=$(_snapshot)
  check "apt downgrade back to $DEB_VERSION" hsh "apt-get install -y -q --allow-downgrades $deb_old"
  # shellcheck disable=SC2086
  _after_version_change "downgrade" "$DEB_VERSION" $snap

  # 4. Remove keeps configs; purge removes user, data and configs.
  hsh "systemctl stop tickring-test-tail tickring-test-replay 2>/dev/null; true"
  check "apt remove tickring" hsh "apt-get remove -y -q tickring"
  check "after remove: dpkg keeps only the configs" _status_is "deinstall ok config-files $DEB_VERSION"
  check "after remove: binary and units gone, nothing runs, port closed" \
    hsh "! test -e /usr/bin/tickring && ! ls /lib/systemd/system/tickring* 2>/dev/null && [[ \"\$(systemctl show -p LoadState --value tickring-gateway.socket)\" =~ ^(not-found|masked)\$ ]] && ! pgrep -u tickring && ! ss -Hltn 'sport = :8080' | grep -q ."
  check "after remove: configs (with the admin's change), user and /var/lib/tickring kept" \
    hsh "test -f /etc/tickring/gateway.toml && grep -q '127.0.0.1:$REPLAY_PORT' $FEED_CONF && getent passwd tickring && test -d /var/lib/tickring"
  check "apt purge tickring" hsh "apt-get purge -y -q tickring"
  check "after purge: dpkg knows no tickring" hsh "! dpkg-query -W -f='\${Status}\n' tickring 2>/dev/null | grep -qE 'ok (installed|config-files|half)'"
  check "after purge: configs, user, group, /var/lib/tickring and ring directories gone" \
    hsh "! test -e /etc/tickring && ! getent passwd tickring && ! getent group tickring && ! test -e /var/lib/tickring && ! test -e /dev/shm/tickring && ! test -e /dev/hugepages/tickring"
  check "after purge: no enablement link or mask left" \
    hsh "[ -z \"\$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked -name 'tickring*' ! -name 'tickring-test-*' ! -name 'tickring-collector@kraken.service.d' 2>/dev/null)\" ]"
  ts_host_stop "$H"
}

run_deb_offline() {
  section ".deb installed where systemd does not run (chroot), then booted"
  local h=offline root
  ts_host_prepare "$h"
  root=$(ts_host_root "$h")
  install -D -m 0644 "$DEB" "$root/var/tmp/$(basename "$DEB")"
  mount -t proc proc "$root/proc"
  local rc=0
  check "apt install in a chroot (no systemd running) succeeds" \
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q "/var/tmp/$(basename "$DEB")"
  umount "$root/proc" || rc=$?
  check "chroot install: user created, units enabled offline, nothing started" \
    bash -c "grep -q '^tickring:' '$root/etc/passwd' && test -L '$root/etc/systemd/system/sockets.target.wants/tickring-gateway.socket' && test -L '$root/etc/systemd/system/multi-user.target.wants/tickring.target' && test -d '$root/var/lib/tickring'"
  ts_host_start "$h"
  check_eq "booted afterwards: the socket listens, the ring directories exist" "active 750 750" \
    ts_host_sh "$h" "echo \$(systemctl is-active tickring-gateway.socket) \$(stat -c %a /dev/shm/tickring) \$(stat -c %a /dev/hugepages/tickring)"
  ts_host_stop "$h"
  return $rc
}
