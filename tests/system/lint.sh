# shellcheck shell=bash
# Static checks of the built packages: lintian, rpm -K/-qpl/--scripts,
# rpmlint. Sourced by run.sh; uses DEB, RPM, REPO.

# What the packages must hold, besides the man pages and the samples (whose
# lists follow the binary's subcommands and the fixtures).
EXPECTED_FILES_COMMON=(
  /etc/tickring/feeds/binance.toml
  /etc/tickring/feeds/coinbase.toml
  /etc/tickring/feeds/kraken.toml
  /etc/tickring/gateway.toml
  /usr/bin/tickring
  /usr/lib/sysusers.d/tickring.conf
  /usr/lib/tmpfiles.d/tickring.conf
  /usr/share/bash-completion/completions/tickring
  /usr/share/fish/vendor_completions.d/tickring.fish
  /usr/share/man/man1/tickring.1.gz
)
UNITS=(tickring-collector@.service tickring-gateway.service tickring-gateway.socket tickring.target)

# rpmlint tags cargo-generate-rpm 0.21 cannot avoid, each with why:
#  no-signature            unsigned: signing needs the release key
#                          (cargo generate-rpm --signing-key), not a CI secret
#  no-packager-tag, no-group-tag, no-changelogname-tag, no-buildhost-tag
#                          cargo-generate-rpm has no setting for Packager,
#                          Group, %changelog or BuildHost
#  only-non-binary-in-usr-lib
#                          the units, sysusers.d and tmpfiles.d files must be
#                          under /usr/lib; the binary is in /usr/bin
#  no-manual-page-for-binary
#                          rpmlint 2.4.0 (Debian 12) records man page sections,
#                          not names, so it never finds one (tickring.1.gz is
#                          in the package: checked by rpm -qpl below)
RPMLINT_ALLOWED="no-signature no-packager-tag no-group-tag no-changelogname-tag no-buildhost-tag only-non-binary-in-usr-lib no-manual-page-for-binary"

_lintian() {
  # --fail-on error,warning: any E: or W: fails; overrides carry comments in
  # packaging/debian/lintian-overrides.
  local out
  out=$(lintian --fail-on error,warning --pedantic --display-info "$DEB" 2>&1 | grep -v 'running with root privileges') || { echo "$out"; return 1; }
  echo "$out"
  ! grep -qE '^[EW]: ' <<<"$out"
}

_deb_files() {
  dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' | sort
}

_deb_has_expected() {
  local files f rc=0
  files=$(_deb_files)
  for f in "${EXPECTED_FILES_COMMON[@]}" "${UNITS[@]/#//lib/systemd/system/}" \
    /usr/share/zsh/vendor-completions/_tickring /usr/share/doc/tickring/copyright \
    /usr/share/doc/tickring/changelog.Debian.gz; do
    grep -qxF "$f" <<<"$files" || { echo "missing in .deb: $f"; rc=1; }
  done
  return $rc
}

_deb_conffiles() {
  dpkg-deb -I "$DEB" conffiles | sort | tr '\n' ' '
}

_samples_count() { find "$FIXTURES" -mindepth 2 -name '*.jsonl' | wc -l; }

_deb_samples() {
  local n
  n=$(_deb_files | grep -c '^/usr/share/tickring/samples/.*\.jsonl$')
  [ "$n" -eq "$(_samples_count)" ] || { echo "samples in .deb: $n, fixtures: $(_samples_count)"; return 1; }
}

_man_pages_render() {
  local tmp rc=0 p
  tmp=$(mktemp -d)
  dpkg-deb -x "$DEB" "$tmp"
  for p in "$tmp"/usr/share/man/man1/*.1.gz; do
    # groff warnings (what lintian's groff-message reports) fail the check.
    if ! out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null); then rc=1; fi
    [ -z "$out" ] || { echo "$p: $out"; rc=1; }
  done
  rm -rf "$tmp"
  return $rc
}

_rpm_files() { rpm -qpl "$RPM" 2>/dev/null | sort; }

_rpm_has_expected() {
  local files f rc=0
  files=$(_rpm_files)
  for f in "${EXPECTED_FILES_COMMON[@]}" "${UNITS[@]/#//usr/lib/systemd/system/}" \
    /usr/share/zsh/site-functions/_tickring /usr/share/licenses/tickring/copyright; do
    grep -qxF "$f" <<<"$files" || { echo "missing in .rpm: $f"; rc=1; }
  done
  local n
  n=$(grep -c '^/usr/share/tickring/samples/.*\.jsonl$' <<<"$files")
  [ "$n" -eq "$(_samples_count)" ] || { echo "samples in .rpm: $n"; rc=1; }
  # Same payload paths as the .deb, but for /lib vs /usr/lib, the zsh
  # completion directory and the copyright file's place.
  local norm_deb norm_rpm
  norm_deb=$(_deb_files | sed 's|^/lib/systemd|/usr/lib/systemd|' | grep -vE '^/usr/share/(doc|lintian|zsh)/' | sort)
  norm_rpm=$(grep -vE '^/usr/share/(licenses|zsh)/' <<<"$files" | sort)
  if [ "$norm_deb" != "$norm_rpm" ]; then
    echo "the .deb and the .rpm ship different files:"
    diff <(echo "$norm_deb") <(echo "$norm_rpm") || true
    rc=1
  fi
  return $rc
}

_rpm_modes() {
  # mode owner:group flags path, for every file
  rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" >"$WORK/rpm-modes.txt"
  local rc=0
  grep -qx -- '-rwxr-xr-x root:root  /usr/bin/tickring' "$WORK/rpm-modes.txt" || { echo "/usr/bin/tickring: not 0755 root:root"; rc=1; }
  local c
  for c in /etc/tickring/gateway.toml /etc/tickring/feeds/kraken.toml /etc/tickring/feeds/coinbase.toml /etc/tickring/feeds/binance.toml; do
    grep -qx -- "-rw-r--r-- root:root cn $c" "$WORK/rpm-modes.txt" || { echo "$c: not %config(noreplace) 0644"; rc=1; }
  done
  if grep -v ' /usr/bin/tickring$' "$WORK/rpm-modes.txt" | grep -v '^-rw-r--r-- root:root' >/dev/null; then
    echo "files other than the binary that are not 0644 root:root:"
    grep -v ' /usr/bin/tickring$' "$WORK/rpm-modes.txt" | grep -v '^-rw-r--r-- root:root'
    rc=1
  fi
  [ $rc -eq 0 ] || cat "$WORK/rpm-modes.txt"
  return $rc
}

_rpm_scripts() {
  local s
  s=$(rpm -qp --scripts "$RPM")
  local p
  for p in '^postinstall scriptlet' 'systemd-sysusers tickring.conf' \
    "try-restart 'tickring-collector@\*.service' tickring-gateway.service" \
    '^preuninstall scriptlet' 'systemctl stop tickring.target' '^postuninstall scriptlet'; do
    grep -q "$p" <<<"$s" || { echo "not in the scriptlets: $p"; echo "$s"; return 1; }
  done
}

_rpm_requires() {
  local r
  r=$(rpm -qpR "$RPM")
  grep -q '^libc.so.6()(64bit)$' <<<"$r" && grep -q '^/bin/sh$' <<<"$r" || { echo "$r"; return 1; }
}

_rpmlint() {
  local out tags bad
  out=$(rpmlint -c "$REPO/packaging/rpm/rpmlint.toml" "$RPM" 2>&1) || true
  tags=$(grep -E '^tickring\.[^:]+: [EW]: ' <<<"$out" | awk '{print $3}' | sort -u)
  bad=$(for t in $tags; do grep -qw -- "$t" <<<"$RPMLINT_ALLOWED" || echo "$t"; done)
  echo "$out" | grep -E '^tickring|checked'
  [ -z "$bad" ] || { echo "tags not on the allowed list: $bad"; return 1; }
}

run_lint() {
  section "packages: lintian, rpm, rpmlint"
  check "lintian: no error, no warning (pedantic, info shown)" _lintian
  check ".deb holds the binary, units, configs, sysusers, tmpfiles, man page, completions, copyright, changelog" _deb_has_expected
  check_eq ".deb conffiles are the 4 configs under /etc/tickring" \
    "/etc/tickring/feeds/binance.toml /etc/tickring/feeds/coinbase.toml /etc/tickring/feeds/kraken.toml /etc/tickring/gateway.toml " _deb_conffiles
  check ".deb carries every sample capture under /usr/share/tickring/samples" _deb_samples
  check "man pages render without groff warnings" _man_pages_render
  check "rpm -K: digests OK" rpm -K "$RPM"
  check "rpm -qpl: same files as the .deb (paths adjusted), samples included" _rpm_has_expected
  check "rpm file modes: binary 0755, configs %config(noreplace) 0644, the rest 0644, all root" _rpm_modes
  check "rpm --scripts: %post (sysusers, try-restart), %preun (stop), %postun" _rpm_scripts
  check "rpm requires libc and /bin/sh (auto-req)" _rpm_requires
  check "rpmlint: only the tags cargo-generate-rpm cannot avoid" _rpmlint
}
