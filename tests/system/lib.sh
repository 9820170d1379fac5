# shellcheck shell=bash
# tests/system/lib.sh: throwaway Debian 12 hosts booting real systemd in
# systemd-nspawn on this machine (whose PID 1 is not systemd), for the
# system tests of the packages and the Ansible role. Source it from bash.
#
#   . tests/system/lib.sh
#   ts_init pkgtest                 # run dir, traps: everything is torn down
#   ts_host_boot h1                 # boots; address 10.213.77.11 by default
#   ts_host_sh h1 'systemctl is-system-running'
#   ts_host_cp h1 ./x.deb /var/tmp/ # nspawn puts a tmpfs on /tmp: use /var/tmp
#   ts_host_stop h1                 # or let the EXIT trap do it
#
# Each host: an overlay over one cached, read-only root file system; its own
# network namespace with a veth on the test's bridge (this machine is
# 10.213.77.1/24 on it; TS_SUBNET changes the /24); its own cgroup
# directories under /sys/fs/cgroup/{unified,systemd}; then
#   systemd-nspawn -D <merged> -b --register=no --keep-unit ...
# Commands run inside with nsenter into all of the host's namespaces.
#
# The root file system is built once by mmdebstrap (minbase + TS_PACKAGES)
# from this machine's apt sources, packed (tar.zst) and unpacked under
# ${TICKRING_CI_CACHE:-/var/cache/tickring-ci}/rootfs/, and rebuilt when the
# package list, the suite or the sources change.
#
# Public functions: ts_init, ts_need_tools, ts_rootfs, ts_host_boot,
# ts_host_prepare, ts_host_start, ts_reserve_hugepages,
# ts_host_exec, ts_host_sh, ts_host_cp, ts_host_ip, ts_host_leader,
# ts_host_root, ts_host_stop, ts_cleanup, ts_wait, ts_log.
# Public variables: TS_RUN (run dir), TS_SUBNET, TS_PACKAGES, TS_SUITE.

TS_SUITE=${TS_SUITE:-bookworm}
# What the hosts carry: systemd as PID 1, what Ansible needs (python3,
# python3-apt, ssh), curl and iproute2 for the tests.
TS_PACKAGES=${TS_PACKAGES:-systemd,systemd-sysv,dbus,libpam-systemd,python3,python3-apt,openssh-server,curl,iproute2,ca-certificates}
# The test's /24: TS_SUBNET if set, else the first of 10.213.77-126 that is
# not routed here yet (so that two runs, say this test and the Ansible one,
# can share the machine).
TS_SUBNET_FIXED=${TS_SUBNET:+1}
TS_SUBNET=${TS_SUBNET:-10.213.77}
TS_CACHE=${TICKRING_CI_CACHE:-/var/cache/tickring-ci}
TS_BOOT_TIMEOUT=${TS_BOOT_TIMEOUT:-60}
# Bumped when the way the root is built changes (invalidates the cache).
TS_ROOTFS_FORMAT=1

declare -gA TS_LEADER=() TS_NSPAWN=() TS_INDEX=()
TS_HOSTS=()
TS_RUN=
TS_ID=
TS_BRIDGE=
TS_CLEANED=0
TS_HUGEPAGES_ADDED=0

ts_log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
ts_die() { ts_log "FATAL: $*"; exit 1; }

# ts_wait SECONDS DESCRIPTION CMD...: runs CMD every 0.2 s until it
# succeeds; fails (returns 1) after SECONDS.
ts_wait() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      ts_log "timed out after ${limit}s waiting for: $what"
      return 1
    fi
    sleep 0.2
  done
}

# Installs what the hosts need on this machine (Debian 12), once.
ts_need_tools() {
  local need=()
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v systemd-nspawn >/dev/null || need+=(systemd-container)
  command -v ip >/dev/null || need+=(iproute2)
  command -v nsenter >/dev/null || need+=(util-linux)
  command -v zstd >/dev/null || need+=(zstd)
  [ ${#need[@]} -eq 0 ] && return 0
  ts_log "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ts_init NAME: makes the run directory and the bridge, and sets the traps
# that tear everything down on exit, success or failure.
ts_init() {
  local name=${1:-systest}
  [ "$(id -u)" -eq 0 ] || ts_die "the system test needs root (namespaces, mounts, cgroups)"
  TS_ID=$(printf '%04x' $(($$ % 65536)))
  TS_RUN=$(mktemp -d "/var/tmp/tickring-$name-XXXXXX")
  TS_BRIDGE="tsbr$TS_ID"
  trap ts_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$TS_CACHE"
  exec 8>"$TS_CACHE/.subnet.lock"
  flock 8
  local n=77
  while grep -q "^$TS_SUBNET\.0/24" <<<"$(ip -4 route show)"; do
    if [ -n "$TS_SUBNET_FIXED" ] || [ $n -ge 126 ]; then
      ts_die "$TS_SUBNET.0/24 is already routed on this machine (another run?); set TS_SUBNET"
    fi
    n=$((n + 1))
    TS_SUBNET=10.213.$n
  done
  ip link add "$TS_BRIDGE" type bridge
  ip addr add "$TS_SUBNET.1/24" dev "$TS_BRIDGE"
  ip link set "$TS_BRIDGE" up
  flock -u 8
  exec 8>&-
}

_ts_sources() {
  if [ -n "${TS_MIRROR:-}" ]; then echo "$TS_MIRROR"; return; fi
  if [ -s /etc/apt/sources.list.d/debian.sources ]; then
    echo /etc/apt/sources.list.d/debian.sources
  else
    echo /etc/apt/sources.list
  fi
}

# ts_rootfs: prints the directory of the unpacked root file system, building
# and caching it first if needed.
ts_rootfs() {
  local src key dir tarball
  src=$(_ts_sources)
  key=$( { echo "$TS_ROOTFS_FORMAT $TS_SUITE $TS_PACKAGES"; cat "$src" 2>/dev/null || echo "$src"; } | sha256sum | cut -c1-16)
  dir=$TS_CACHE/rootfs/$TS_SUITE-$key
  tarball=$dir.tar.zst
  if [ -f "$dir/.complete" ]; then echo "$dir"; return; fi
  mkdir -p "$TS_CACHE/rootfs"
  exec 9>"$TS_CACHE/rootfs/.lock"
  flock 9
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    if [ ! -f "$tarball" ]; then
      ts_log "building the $TS_SUITE root file system with mmdebstrap (once; ~1 min)"
      local tmp=$dir.building
      rm -rf "$tmp"
      mmdebstrap --quiet --mode=root --variant=minbase --include="$TS_PACKAGES" \
        "$TS_SUITE" "$tmp" "$src" >&2 || { rm -rf "$tmp"; ts_die "mmdebstrap failed"; }
      # A fixed machine-id would be shared by every host: let each boot
      # make its own (an empty file means "first boot, generate one").
      : >"$tmp/etc/machine-id"
      rm -f "$tmp/var/lib/dbus/machine-id"
      # Hosts are reached by nsenter or ssh with a key; no serial getty.
      ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
      tar --zstd -C "$tmp" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
      mv "$tmp" "$dir"
      # Older builds of other package lists stay until removed by hand.
    else
      ts_log "unpacking the cached root file system $tarball"
      mkdir -p "$dir.unpack"
      tar --zstd -C "$dir.unpack" -xf "$tarball"
      mv "$dir.unpack" "$dir"
    fi
    touch "$dir/.complete"
  fi
  flock -u 9
  echo "$dir"
}

ts_host_root() { echo "$TS_RUN/$1/merged"; }
ts_host_leader() { echo "${TS_LEADER[$1]}"; }
ts_host_ip() { echo "$TS_SUBNET.$((10 + ${TS_INDEX[$1]}))"; }
_ts_ns() { echo "ts$TS_ID-$1"; }

# The container's PID 1: the descendant of nspawn that is PID 1 in its own
# PID namespace.
_ts_find_leader() {
  local nspawn=$1 p q
  for p in $(pgrep -P "$nspawn") ; do
    for q in "$p" $(pgrep -P "$p"); do
      if awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' "/proc/$q/status" 2>/dev/null; then
        echo "$q"; return 0
      fi
    done
  done
  return 1
}

_ts_running() {
  local state
  state=$(ts_host_exec "$1" systemctl is-system-running 2>/dev/null) || true
  [ "$state" = running ] || [ "$state" = degraded ]
}

# ts_host_prepare NAME: the host's overlay, network namespace and veth,
# without booting it (its root is then `ts_host_root NAME`: install into it
# offline, e.g. with chroot, before ts_host_start).
ts_host_prepare() {
  local name=$1
  local root dir ns idx veth
  root=$(ts_rootfs) || ts_die "no root file system"
  idx=$(( ${#TS_HOSTS[@]} + 1 ))
  dir=$TS_RUN/$name
  ns=$(_ts_ns "$name")
  TS_HOSTS+=("$name")
  TS_INDEX[$name]=$idx
  mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
  mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
  echo "$name" >"$dir/merged/etc/hostname"

  ip netns add "$ns"
  veth="ts${TS_ID}h$idx"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$TS_BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(ts_host_ip "$name")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# ts_host_boot NAME [NSPAWN_OPTION...]: prepares and starts a host.
ts_host_boot() { ts_host_prepare "$1" && ts_host_start "$@"; }

# ts_host_start NAME [NSPAWN_OPTION...]: boots a prepared host and waits
# until its systemd reports running (or degraded: the failed units are
# logged).
ts_host_start() {
  local name=$1; shift
  local dir ns cg leader=
  dir=$TS_RUN/$name
  ns=$(_ts_ns "$name")
  for cg in unified systemd; do
    mkdir -p "/sys/fs/cgroup/$cg/$ns"
  done
  # A subshell moves itself into the host's cgroups and becomes nspawn.
  # CAP_IPC_LOCK, CAP_SYS_RESOURCE: a real host's PID 1 has every
  # capability; nspawn drops these two by default, and without them systemd
  # can grant neither AmbientCapabilities=CAP_IPC_LOCK nor
  # LimitMEMLOCK=infinity. (Where the machine itself lacks one, as this
  # sandbox lacks CAP_SYS_RESOURCE, the container cannot get it.)
  (
    echo "$BASHPID" >"/sys/fs/cgroup/unified/$ns/cgroup.procs"
    echo "$BASHPID" >"/sys/fs/cgroup/systemd/$ns/cgroup.procs"
    exec systemd-nspawn --quiet -D "$dir/merged" -b --register=no --keep-unit \
      -M "$name" --network-namespace-path="/run/netns/$ns" --console=read-only \
      --capability=CAP_IPC_LOCK,CAP_SYS_RESOURCE --resolv-conf=off --timezone=off --link-journal=no \
      "$@" </dev/null >"$dir/console.log" 2>&1
  ) &
  TS_NSPAWN[$name]=$!
  local deadline=$((SECONDS + 20))
  until leader=$(_ts_find_leader "${TS_NSPAWN[$name]}"); do
    if ! kill -0 "${TS_NSPAWN[$name]}" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      tail -20 "$dir/console.log" >&2
      ts_die "host $name: systemd-nspawn did not start a container"
    fi
    sleep 0.1
  done
  TS_LEADER[$name]=$leader
  if ! ts_wait "$TS_BOOT_TIMEOUT" "host $name to boot" _ts_running "$name"; then
    tail -30 "$dir/console.log" >&2
    ts_die "host $name did not finish booting"
  fi
  local failed
  failed=$(ts_host_exec "$name" systemctl list-units --failed --plain --no-legend 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
  if [ -n "$failed" ]; then
    ts_log "host $name is up (leader pid $leader; degraded: $failed)"
  else
    ts_log "host $name is up (leader pid $leader)"
  fi
  return 0
}

# ts_host_exec NAME CMD...: runs CMD in all of the host's namespaces, with a
# clean environment, killed after TS_EXEC_TIMEOUT (120) seconds.
ts_host_exec() {
  local name=$1; shift
  timeout --kill-after=5 "${TS_EXEC_TIMEOUT:-120}" nsenter -t "${TS_LEADER[$name]}" -a -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
    SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# ts_host_sh NAME SCRIPT: runs a bash script in the host.
ts_host_sh() { local name=$1; shift; ts_host_exec "$name" /bin/bash -c "$*"; }

# ts_host_cp NAME SRC DEST: copies a file into the host's file system.
ts_host_cp() { install -D -m "${4:-0644}" "$2" "$(ts_host_root "$1")/$3$( [ "${3%/}" != "$3" ] && basename "$2")"; }

# ts_host_stop NAME: asks systemd to power off (SIGRTMIN+4), then kills
# what is left after 15 s; unmounts the overlay and removes the namespace
# and the cgroups.
ts_host_stop() {
  local name=$1 ns dir pid leader
  ns=$(_ts_ns "$name")
  dir=$TS_RUN/$name
  pid=${TS_NSPAWN[$name]:-}
  leader=${TS_LEADER[$name]:-}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    if [ -n "$leader" ]; then kill -s RTMIN+4 "$leader" 2>/dev/null || true; fi
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      ts_log "host $name did not power off in 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      [ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  unset "TS_NSPAWN[$name]"
  # Anything left in the host's cgroups (a stuck process) is killed.
  local cg procs
  for cg in unified systemd; do
    if [ -d "/sys/fs/cgroup/$cg/$ns" ]; then
      procs=$(find "/sys/fs/cgroup/$cg/$ns" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
      # shellcheck disable=SC2086 # one pid per word
      [ -n "$procs" ] && kill -KILL $procs 2>/dev/null || true
    fi
  done
  for cg in unified systemd; do
    [ -d "/sys/fs/cgroup/$cg/$ns" ] || continue
    local tries=0
    until find "/sys/fs/cgroup/$cg/$ns" -depth -type d -exec rmdir {} + 2>/dev/null; do
      tries=$((tries + 1)); [ $tries -ge 50 ] && { ts_log "could not remove cgroup $cg/$ns"; break; }
      sleep 0.1
    done
  done
  if mountpoint -q "$dir/merged" 2>/dev/null; then
    umount "$dir/merged" 2>/dev/null || umount -l "$dir/merged" || true
  fi
  ip netns del "$ns" 2>/dev/null || true
}

# ts_reserve_hugepages N: makes sure N 2 MiB huge pages are free for the
# hosts (they share this machine's kernel pool), adding what is missing to
# vm.nr_hugepages; ts_cleanup takes back exactly what was added. Returns 1
# when the kernel would not give them.
ts_reserve_hugepages() {
  local want=$1 free total
  local sys=/sys/kernel/mm/hugepages/hugepages-2048kB
  [ -w "$sys/nr_hugepages" ] || return 1
  free=$(cat "$sys/free_hugepages")
  [ "$free" -ge "$want" ] && return 0
  total=$(cat "$sys/nr_hugepages")
  echo $((total + want - free)) >"$sys/nr_hugepages" 2>/dev/null || true
  TS_HUGEPAGES_ADDED=$(( $(cat "$sys/nr_hugepages") - total ))
  [ "$(cat "$sys/free_hugepages")" -ge "$want" ]
}

_ts_release_hugepages() {
  local sys=/sys/kernel/mm/hugepages/hugepages-2048kB
  [ "$TS_HUGEPAGES_ADDED" -gt 0 ] || return 0
  echo $(( $(cat "$sys/nr_hugepages") - TS_HUGEPAGES_ADDED )) >"$sys/nr_hugepages" || true
  TS_HUGEPAGES_ADDED=0
}

# ts_cleanup: stops every host and removes everything the run made. The
# EXIT trap calls it; safe to call twice.
ts_cleanup() {
  local rc=$?
  [ "$TS_CLEANED" = 1 ] && return "$rc"
  TS_CLEANED=1
  trap - EXIT INT TERM
  local h
  for h in "${TS_HOSTS[@]}"; do ts_host_stop "$h"; done
  [ -n "$TS_BRIDGE" ] && ip link del "$TS_BRIDGE" 2>/dev/null || true
  _ts_release_hugepages
  if [ -n "$TS_RUN" ] && [ -d "$TS_RUN" ]; then
    if [ "$rc" -ne 0 ] && [ -n "${TS_KEEP_LOGS:-}" ]; then
      ts_log "logs kept in $TS_RUN (TS_KEEP_LOGS)"
      find "$TS_RUN" -mindepth 2 -maxdepth 2 -name upper -exec rm -rf {} + || true
    else
      rm -rf "$TS_RUN"
    fi
  fi
  return "$rc"
}
