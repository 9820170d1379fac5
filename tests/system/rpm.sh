# shellcheck shell=bash
# The .rpm installed with `rpm --root` into a scratch Debian 12 root (an
# overlay of the hosts' root): install, upgrade, erase, with the scriptlets
# running chrooted (no systemd running there). Sourced by run.sh; uses RPM,
# RPM_NEW.
#
# --nodeps: the scratch root's rpm database is empty, so nothing in it
# provides libc.so.6, libgcc_s.so.1 or /bin/sh, although the root has them
# all (Debian's dpkg owns them). The requirements themselves are checked by
# `rpm -qpR` in lint.sh.

_rr() { rpm --root="$RPMROOT" "$@"; }

_rpm_installed_files() {
  local rc=0 f
  # rpm -V: digests, modes, owners and sizes of every file as installed.
  _rr -V --nodeps tickring || rc=1
  for f in /usr/bin/tickring:755 /etc/tickring/gateway.toml:644 /etc/tickring/feeds/kraken.toml:644 \
    /usr/lib/systemd/system/tickring-collector@.service:644 /usr/lib/sysusers.d/tickring.conf:644; do
    [ "$(stat -c '%a %U %G' "$RPMROOT${f%%:*}")" = "${f##*:} root root" ] || { stat -c '%n %a %U %G' "$RPMROOT${f%%:*}"; rc=1; }
  done
  [ "$(_rr -ql tickring | sort)" = "$(rpm -qpl "$RPM" | sort)" ] || { echo "installed file list differs from rpm -qpl"; rc=1; }
  "$RPMROOT/usr/bin/tickring" --version >/dev/null || rc=1
  return $rc
}

_rpm_post_effects() {
  # Owners by number: this machine's names for the root's ids differ.
  local uid
  uid=$(awk -F: '$1 == "tickring" { print $3 }' "$RPMROOT/etc/passwd")
  [ -n "$uid" ] && grep -q '^tickring:' "$RPMROOT/etc/group" \
    && [ "$(stat -c '%a %u' "$RPMROOT/var/lib/tickring")" = "750 $uid" ] \
    && test -L "$RPMROOT/etc/systemd/system/sockets.target.wants/tickring-gateway.socket" \
    && test -L "$RPMROOT/etc/systemd/system/multi-user.target.wants/tickring.target"
}

run_rpm() {
  section ".rpm: rpm --root into a scratch Debian 12 root"
  ts_host_prepare rpmroot
  RPMROOT=$(ts_host_root rpmroot)
  check "rpm -i --nodeps: installs, scriptlets run without error" \
    bash -c "out=\$(rpm --root='$RPMROOT' -i --nodeps '$RPM' 2>&1); echo \"\$out\"; ! grep -qi 'scriptlet failed\|warning' <<<\"\$out\""
  check "installed files: rpm -V clean, modes and owners, same list as rpm -qpl, binary runs" _rpm_installed_files
  check "%post: user and group tickring, /var/lib/tickring 0750, target and socket enabled" _rpm_post_effects
  sed -i 's|^# endpoint = .*|endpoint = "ws://127.0.0.1:9443/v2"|' "$RPMROOT/etc/tickring/feeds/kraken.toml"
  check "rpm -U to release 2 keeps the changed config (noreplace), scriptlets clean" \
    bash -c "out=\$(rpm --root='$RPMROOT' -U --nodeps '$RPM_NEW' 2>&1); echo \"\$out\"; ! grep -qi 'scriptlet failed' <<<\"\$out\" && grep -q '127.0.0.1:9443' '$RPMROOT/etc/tickring/feeds/kraken.toml' && [ \"\$(rpm --root='$RPMROOT' -q tickring)\" = '$(rpm -qp "$RPM_NEW" 2>/dev/null)' ]"
  check "rpm -e: files gone, changed config saved as .rpmsave, units disabled, user kept" \
    bash -c "rpm --root='$RPMROOT' -e tickring && ! test -e '$RPMROOT/usr/bin/tickring' && test -f '$RPMROOT/etc/tickring/feeds/kraken.toml.rpmsave' && ! test -e '$RPMROOT/etc/systemd/system/sockets.target.wants/tickring-gateway.socket' && grep -q '^tickring:' '$RPMROOT/etc/passwd'"
  ts_host_stop rpmroot
}
