#!/usr/bin/env bash
# The Ansible rollout the way a firm runs it, on three booted Debian 12
# hosts (systemd-nspawn, each in its own network namespace, reached over
# ssh with a key made for this run):
#   1. site.yml: tune, install, configure two collectors (kraken, coinbase;
#      each fed by a replay server on its own host) and the gateway, wait
#      for every /ready and every ring to advance, show `tickring doctor`;
#   2. site.yml again: changed=0 on every host;
#   3. upgrade.yml to a newer build: host by host, all healthy;
#   4. upgrade.yml to a build whose collector cannot start (it installs
#      fine): host 1 fails its health gate, is rolled back by itself and is
#      healthy again; the rollout stops; hosts 2 and 3 are untouched;
#   5. rollback.yml to the first version: every host back, healthy.
# Prints each phase's duration.
#
#   tests/system/ansible.sh [--no-build]
# Options: --no-build (use the .deb already in target/packages).
# Env: TICKRING_CI_CACHE, TICKRING_FIXTURES, TS_KEEP_LOGS=1 (keep the run
#      directory with the Ansible logs of a failed run).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
HERE=$REPO/tests/system
. "$HERE/lib.sh"
. "$HERE/checks.sh"

build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    *) echo "ansible.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

HOSTS=(h1 h2 h3)
OUT=$REPO/target/packages
KRAKEN_PORT=9443
COINBASE_PORT=9444

section "setup"
ts_need_tools
command -v ssh-keygen >/dev/null && command -v ssh >/dev/null || {
  ts_log "apt-get install openssh-client"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null
}
command -v curl >/dev/null || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
}
PY=$("$REPO/tests/python/setup.sh" "$REPO/tests/ansible/requirements.txt" ansible)
ANSIBLE_BIN=$(dirname "$PY")

VERSION=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
V_OLD=$VERSION-1
V_NEW=$VERSION-1+ansible1
V_BROKEN=$VERSION-1+ansible2
DEB_OLD=$OUT/tickring_${V_OLD}_amd64.deb
DEB_NEW=$OUT/tickring_${V_NEW}_amd64.deb
DEB_BROKEN=$OUT/tickring_${V_BROKEN}_amd64.deb
if [ "$build" = 1 ] || [ ! -f "$DEB_OLD" ]; then
  t0=$SECONDS
  packaging/build.sh >/dev/null
  echo "package built in $((SECONDS - t0)) s"
fi
[ -f "$DEB_NEW" ] && [ "$DEB_NEW" -nt "$DEB_OLD" ] || packaging/build.sh --deb-version "$V_NEW" >/dev/null

ts_init ansible
WORK=$TS_RUN

# The broken build: the newer package with /usr/bin/tickring replaced by a
# wrapper whose `collect` exits at once (everything else, the maintainer
# scripts' and the gateway's uses included, runs the real binary). It
# installs like any other; its collectors never become ready.
make_broken_deb() {
  local d=$WORK/broken
  rm -rf "$d"
  dpkg-deb -R "$DEB_NEW" "$d"
  install -d "$d/usr/lib/tickring"
  mv "$d/usr/bin/tickring" "$d/usr/lib/tickring/tickring-real"
  cat >"$d/usr/bin/tickring" <<'EOF'
#!/bin/sh
# A deliberately broken build for the Ansible system test.
if [ "${1:-}" = collect ]; then
  echo "tickring: this build is broken on purpose (Ansible rollback test)" >&2
  exit 1
fi
exec /usr/lib/tickring/tickring-real "$@"
EOF
  chmod 0755 "$d/usr/bin/tickring"
  sed -i "s/^Version: .*/Version: $V_BROKEN/" "$d/DEBIAN/control"
  (cd "$d" && find usr -type f -exec md5sum {} + >DEBIAN/md5sums)
  dpkg-deb --root-owner-group -Zxz -b "$d" "$DEB_BROKEN" >/dev/null
  rm -rf "$d"
}
make_broken_deb
for f in "$DEB_OLD" "$DEB_NEW" "$DEB_BROKEN"; do echo "package: ${f#"$REPO"/}"; done

# --- hosts -----------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C tickring-ansible-test -f "$WORK/id_ed25519"
t_root=$SECONDS
ts_rootfs >/dev/null
echo "root file system ready in $((SECONDS - t_root)) s"

replay_unit() { # NAME ARGS...
  local name=$1; shift
  cat <<EOF
[Unit]
Description=Replay server for the Ansible system test ($name)
# Until the package brings /usr/bin/tickring, this fails and is retried.
StartLimitIntervalSec=0
[Service]
ExecStart=/usr/bin/tickring replay $*
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
EOF
}

t_boot=$SECONDS
for h in "${HOSTS[@]}"; do
  ts_host_prepare "$h"
  root=$(ts_host_root "$h")
  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$WORK/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
  S=/usr/share/tickring/samples
  replay_unit kraken --exchange kraken --file $S/kraken/v2_session_book_d10.jsonl \
    --listen 127.0.0.1:$KRAKEN_PORT --pace 100 --loop >"$root/etc/systemd/system/tickring-test-replay-kraken.service"
  replay_unit coinbase --exchange coinbase --file $S/coinbase/exchange_level2.jsonl --file $S/coinbase/exchange_matches.jsonl \
    --listen 127.0.0.1:$COINBASE_PORT --pace 100 --loop >"$root/etc/systemd/system/tickring-test-replay-coinbase.service"
  for u in kraken coinbase; do
    ln -s "/etc/systemd/system/tickring-test-replay-$u.service" \
      "$root/etc/systemd/system/multi-user.target.wants/tickring-test-replay-$u.service"
  done
done
for h in "${HOSTS[@]}"; do ts_host_start "$h"; done
for h in "${HOSTS[@]}"; do
  ts_wait 30 "ssh to $h" ssh -i "$WORK/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 -o LogLevel=ERROR "root@$(ts_host_ip "$h")" true ||
    ts_die "no ssh to $h"
done
echo "3 hosts booted and reachable over ssh in $((SECONDS - t_boot)) s"

# --- inventory: the hosts' addresses, this run's key; host keys are not
# checked for these throwaway hosts (here only, not in ansible.cfg). ---------
cat >"$WORK/inventory.yml" <<EOF
---
tickring:
  hosts:
$(for h in "${HOSTS[@]}"; do printf '    %s:\n      ansible_host: %s\n' "$h" "$(ts_host_ip "$h")"; done)
  vars:
    ansible_user: root
    ansible_python_interpreter: /usr/bin/python3
    ansible_ssh_private_key_file: $WORK/id_ed25519
    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    tickring_package_file: $DEB_OLD
    # Metrics and the gateway on the host's own address (so the test, and
    # Prometheus, reach them from outside).
    tickring_metrics_address: "{{ ansible_host }}"
    tickring_gateway_port: 8080
    tickring_gateway_tokens: [ansible-test-token-1, ansible-test-token-2]
    tickring_health_timeout: 10
    tickring_host_sysctls: {kernel.io_uring_disabled: 0}
    tickring_health_ring_timeout: 10
    tickring_feeds:
      - name: kraken
        exchange: kraken
        symbols: [BTC/USD]
        endpoint: ws://127.0.0.1:$KRAKEN_PORT/v2
        book_depth: 10
        core: 1
        housekeeping_core: 0
        metrics_port: 9101
        instruments:
          BTC/USD: {price_scale: 1, qty_scale: 8}
      - name: coinbase
        exchange: coinbase
        symbols: [BAND-BTC, BAND-GBP, CRV-EUR, DASH-BTC, NMR-EUR, NU-GBP, SKL-BTC, SKL-GBP, SKL-USD, YFI-BTC]
        endpoint: ws://127.0.0.1:$COINBASE_PORT/
        metrics_port: 9102
EOF

export ANSIBLE_CONFIG=$REPO/ansible/ansible.cfg
export ANSIBLE_HOME=$WORK/ansible-home
export ANSIBLE_FORKS=3
export ANSIBLE_NOCOLOR=1
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_SSH_CONTROL_PATH_DIR=$WORK/cp
export PATH=$ANSIBLE_BIN:$PATH
# Where each run spends its time (printed at the end of each log).
export ANSIBLE_CALLBACK_PLUGINS=$REPO/tests/ansible/callback_plugins
export ANSIBLE_CALLBACKS_ENABLED=task_timer

# play NAME PLAYBOOK ARGS...: runs a playbook, log in $WORK/NAME.log;
# sets PLAY_RC and PLAY_SECONDS.
play() {
  local name=$1 pb=$2; shift 2
  local t0=$SECONDS
  PLAY_RC=0
  ansible-playbook -i "$WORK/inventory.yml" "$REPO/ansible/$pb" "$@" >"$WORK/$name.log" 2>&1 || PLAY_RC=$?
  PLAY_SECONDS=$((SECONDS - t0))
  echo "        ($name: ansible-playbook $pb exited $PLAY_RC in $PLAY_SECONDS s; log $WORK/$name.log)"
  sed -n '/^TASK TIMES/,$p' "$WORK/$name.log" | head -n 6 | sed 's/^/        /'
}
show_log() { sed 's/^/        | /' "$WORK/$1.log" | tail -n "${2:-40}"; }
recap() { # LOG HOST FIELD
  awk -v h="$2" -v f="$3" '$1 == h && $2 == ":" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$WORK/$1.log" | tail -n 1
}

hsh() { ts_host_sh "$1" "$2"; }
version_of() { hsh "$1" "dpkg-query -W -f='\${Version}' tickring"; }
versions() { local h out=(); for h in "${HOSTS[@]}"; do out+=("$(version_of "$h")"); done; echo "${out[*]}"; }
ready_all() { # every /ready on every host answers 200, from this machine
  local h ip p rc=0 code
  for h in "${HOSTS[@]}"; do
    ip=$(ts_host_ip "$h")
    for p in 9101 9102 8080; do
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$ip:$p/ready") || true
      [ "$code" = 200 ] || { echo "$h $ip:$p/ready -> $code"; rc=1; }
    done
  done
  return $rc
}
ring_advances() { # HOST RING
  local c1 c2
  c1=$(hsh "$1" "tickring stat --json $2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])') || return 1
  sleep 1
  c2=$(hsh "$1" "tickring stat --json $2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])') || return 1
  echo "$1 $2: cursor $c1 -> $c2"
  [ "$c2" -gt "$c1" ]
}
rings_advance() { ring_advances "$1" kraken && ring_advances "$1" coinbase; }
# flat NAME: the log with every run of white space made one space (the
# callback folds long messages over lines).
flat() { tr -s ' \n' ' ' <"$WORK/$1.log"; }
in_log() { flat "$1" | grep -qF -- "$2" || { echo "not in $1.log: $2"; return 1; }; }
count_in_log() { flat "$1" | grep -oF -- "$2" | wc -l; }
untouched() { # HOST
  if ts_host_sh "$1" 'ls /var/cache/tickring/packages/' | grep -qF "$V_BROKEN"; then echo "$1 has the broken package"; return 1; fi
  local now; now=$(invocations "$1")
  [ "$now" = "${INV_BEFORE[$1]}" ] || { echo "$1 invocations changed: ${INV_BEFORE[$1]} -> $now"; return 1; }
}
invocations() { # HOST: the collectors' and the gateway's invocation ids
  hsh "$1" "systemctl show -p InvocationID --value tickring-collector@kraken tickring-collector@coinbase tickring-gateway.service | tr '\n' ' '"
}

# --- 1. fresh rollout ------------------------------------------------------
section "1. site.yml: fresh rollout of 3 hosts"
play site1 site.yml
T_SITE=$PLAY_SECONDS
if [ "$PLAY_RC" -ne 0 ]; then show_log site1 60; fi
check "site.yml succeeds on all 3 hosts" test "$PLAY_RC" -eq 0
# Nothing after this makes sense without a rollout.
[ "$PLAY_RC" -eq 0 ] || { summary; exit 1; }
check_eq "tickring $V_OLD installed on h1 h2 h3" "$V_OLD $V_OLD $V_OLD" versions
check "every collector /ready (9101, 9102) and the gateway /ready (8080) answer 200 on each host's address" ready_all
for h in "${HOSTS[@]}"; do
  check "$h: rings kraken and coinbase advance" rings_advance "$h"
done
check_eq "the health gate passed on every host (its message is in the log)" 3 count_in_log site1 'tickring health gate passed on host'
check "feed configs written and valid; kraken pinned by cpu.conf (CPUAffinity=1 0), coinbase not pinned" \
  hsh h1 "tickring validate --config /etc/tickring/feeds/kraken.toml >/dev/null && tickring validate --config /etc/tickring/feeds/coinbase.toml >/dev/null &&
          grep -q '^endpoint = \"ws://127.0.0.1:$KRAKEN_PORT/v2\"' /etc/tickring/feeds/kraken.toml &&
          grep -q '^listen = \"$(ts_host_ip h1):9101\"' /etc/tickring/feeds/kraken.toml &&
          [ \"\$(systemctl show -p CPUAffinity --value tickring-collector@kraken)\" = '0-1' ] &&
          ! test -e /etc/systemd/system/tickring-collector@coinbase.service.d/cpu.conf"
check "feeds not in the inventory (the package's example binance.toml) removed; only kraken and coinbase configured" \
  hsh h1 "[ \"\$(ls /etc/tickring/feeds | tr '\\n' ' ')\" = 'coinbase.toml kraken.toml ' ]"
check "collectors enabled; the gateway socket listens on the host's address only (drop-in), service enabled" \
  hsh h1 "[ \"\$(systemctl is-enabled tickring-collector@kraken tickring-collector@coinbase tickring-gateway.socket tickring-gateway.service tickring.target | sort -u)\" = enabled ] &&
          [ \"\$(ss -Hltn 'sport = :8080' | awk '{print \$4}')\" = '$(ts_host_ip h1):8080' ]"
check "tokens: /etc/tickring/gateway.tokens is 0600 root:root, gateway.toml names the credential and holds no token" \
  hsh h1 "[ \"\$(stat -c '%a %U %G' /etc/tickring/gateway.tokens)\" = '600 root root' ] &&
          grep -q '^tokens_credential = \"tokens\"' /etc/tickring/gateway.toml && ! grep -rq ansible-test-token /etc/tickring/gateway.toml /etc/tickring/feeds"
check "tokens reach the gateway: /v1/status 401 without a token, 200 with one" \
  bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' http://$(ts_host_ip h1):8080/v1/status) = 401 ] &&
           [ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer ansible-test-token-2' http://$(ts_host_ip h1):8080/v1/status) = 200 ]"
check "no token in the Ansible log (no_log)" bash -c "! grep -q ansible-test-token '$WORK/site1.log'"
check "host tuning written: GRUB drop-in isolates core 1, sysctl.d file, tuning unit enabled, memlock limits, hugetlbfs mounted for tickring" \
  hsh h1 "grep -q 'isolcpus=managed_irq,domain,1 nohz_full=1 rcu_nocbs=1 transparent_hugepage=never' /etc/default/grub.d/60-tickring.cfg &&
          grep -qx 'kernel.io_uring_disabled = 0' /etc/sysctl.d/90-tickring.conf &&
          systemctl is-enabled --quiet tickring-host-tuning.service && grep -q '^@tickring hard memlock unlimited' /etc/security/limits.d/60-tickring.conf &&
          findmnt -n -t hugetlbfs /dev/hugepages/tickring >/dev/null && [ \"\$(stat -c '%U %G %a' /dev/hugepages/tickring)\" = 'tickring tickring 750' ]"
check "container limits are skipped visibly, with a reason" \
  bash -c "$(declare -f flat in_log); WORK=$WORK; in_log site1 'skipped: huge page reservation' && in_log site1 'reboot required on h1' && in_log site1 'container boots no kernel of its own'"
if in_log site1 'skipped: this tickring has no doctor' >/dev/null; then
  skip "tickring doctor result (this build has no doctor subcommand; the play said so)"
else
  check "tickring doctor ran at the end and its result is shown" in_log site1 'tickring doctor on h1:'
  grep -A12 'tickring doctor on h1:' "$WORK/site1.log" | sed 's/^/        | /' || true
fi

# --- 2. idempotence --------------------------------------------------------
section "2. site.yml again: nothing to change"
play site2 site.yml
T_SITE2=$PLAY_SECONDS
check "second site.yml succeeds" test "$PLAY_RC" -eq 0
for h in "${HOSTS[@]}"; do
  check_eq "$h: PLAY RECAP changed=0" 0 recap site2 "$h" changed
done
[ "$(recap site2 h1 changed)" = 0 ] || grep -B3 '^changed:' "$WORK/site2.log" | sed 's/^/        | /' | head -40

# --- 2b. a change restarts only what it concerns ----------------------------
section "2b. site.yml --tags tickring_configure with a new gateway setting"
declare -A INV_CHANGE=()
for h in "${HOSTS[@]}"; do INV_CHANGE[$h]=$(invocations "$h"); done
play change site.yml --tags tickring_configure -e tickring_gateway_ready_max_age_ms=6000
check "site.yml with ready_max_age_ms=6000 succeeds" test "$PLAY_RC" -eq 0
only_gateway_restarted() { # HOST
  local before now
  read -r -a before <<<"${INV_CHANGE[$1]}"
  read -r -a now <<<"$(invocations "$1")"
  [ "${before[0]} ${before[1]}" = "${now[0]} ${now[1]}" ] || { echo "$1: a collector was restarted: ${before[*]} -> ${now[*]}"; return 1; }
  [ "${before[2]}" != "${now[2]}" ] || { echo "$1: the gateway was not restarted"; return 1; }
  hsh "$1" "grep -q '^ready_max_age_ms = 6000' /etc/tickring/gateway.toml"
}
for h in "${HOSTS[@]}"; do
  check "$h: the gateway (config changed) was restarted, the collectors were not" only_gateway_restarted "$h"
done

# --- 3. rolling upgrade ----------------------------------------------------
section "3. upgrade.yml to $V_NEW"
play upgrade upgrade.yml -e "tickring_package_file=$DEB_NEW"
T_UPGRADE=$PLAY_SECONDS
if [ "$PLAY_RC" -ne 0 ]; then show_log upgrade 60; fi
check "upgrade.yml succeeds" test "$PLAY_RC" -eq 0
[ "$PLAY_RC" -eq 0 ] || { summary; exit 1; }
check_eq "tickring $V_NEW on h1 h2 h3" "$V_NEW $V_NEW $V_NEW" versions
check_eq "host by host: three batches of one host, each gated" "3 3" \
  bash -c "echo \$(grep -c '^PLAY \[Rolling upgrade of tickring\]' '$WORK/upgrade.log') $(count_in_log upgrade 'tickring health gate passed on host')"
check_eq "hosts upgraded in order h1, h2, h3" "h1 h2 h3" \
  bash -c "$(declare -f flat); WORK=$WORK; flat upgrade | grep -oF -e 'h1: tickring $V_OLD -> $V_NEW, healthy' -e 'h2: tickring $V_OLD -> $V_NEW, healthy' -e 'h3: tickring $V_OLD -> $V_NEW, healthy' | cut -c1-2 | tr '\n' ' ' | sed 's/ \$//'"
check "every /ready answers 200 after the upgrade" ready_all

# --- 4. an upgrade that fails its health gate -------------------------------
section "4. upgrade.yml to the broken build $V_BROKEN"
declare -A INV_BEFORE=()
for h in h2 h3; do INV_BEFORE[$h]=$(invocations "$h"); done
play broken upgrade.yml -e "tickring_package_file=$DEB_BROKEN"
T_BROKEN=$PLAY_SECONDS
check "upgrade.yml fails (exit $PLAY_RC)" test "$PLAY_RC" -ne 0
check "the rollout stopped with a message naming host h1 and the failed check" \
  bash -c "$(declare -f flat in_log); WORK=$WORK; in_log broken 'ROLLOUT STOPPED: the upgrade failed its health gate on host h1' &&
           in_log broken 'check \"collector kraken /ready\"'"
{ flat broken | grep -o "ROLLOUT STOPPED.*" | sed "s/' *NO MORE HOSTS.*//" | fold -w 150 | sed 's/^/        > /'; } || true
check "h1 ran the broken build, then was rolled back to $V_NEW (dpkg.log)" \
  hsh h1 "grep -q ' upgrade tickring:amd64 $V_NEW $V_BROKEN\$' /var/log/dpkg.log && grep -q ' upgrade tickring:amd64 $V_BROKEN $V_NEW\$' /var/log/dpkg.log || { grep ' upgrade tickring' /var/log/dpkg.log; exit 1; }"
check_eq "versions: h1 back on $V_NEW, h2 and h3 still on $V_NEW" "$V_NEW $V_NEW $V_NEW" versions
check_eq "h1 passed the health gate again after the rollback" 1 count_in_log broken 'tickring health gate passed on host h1'
for h in h2 h3; do
  check "$h untouched: broken package never copied, collectors and gateway not restarted" untouched "$h"
done
check "every /ready answers 200 after the automatic rollback" ready_all

# --- 5. rollback.yml ---------------------------------------------------------
section "5. rollback.yml to $V_OLD"
play rollback rollback.yml -e "tickring_rollback_version=$V_OLD"
T_ROLLBACK=$PLAY_SECONDS
if [ "$PLAY_RC" -ne 0 ]; then show_log rollback 60; fi
check "rollback.yml succeeds" test "$PLAY_RC" -eq 0
check_eq "tickring $V_OLD on h1 h2 h3 again" "$V_OLD $V_OLD $V_OLD" versions
check "every /ready answers 200 on $V_OLD" ready_all

section "durations"
echo "fresh rollout of 3 hosts: $T_SITE s (target < 60 s)"
echo "second site.yml (no change): $T_SITE2 s"
echo "rolling upgrade of 3 hosts: $T_UPGRADE s (target < 90 s)"
echo "failed upgrade with automatic rollback of host 1: $T_BROKEN s (target < 30 s)"
echo "rollback.yml of 3 hosts: $T_ROLLBACK s"
section "done in $SECONDS s"
summary
