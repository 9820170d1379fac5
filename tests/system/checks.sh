# shellcheck shell=bash
# Check bookkeeping for the system test: every check prints one line (ok,
# FAIL with the output of what failed, or SKIPPED with why), and the run
# ends with "system-test: N passed, N failed, N skipped".

SYS_PASS=0
SYS_FAIL=0
SYS_SKIP=0
SYS_FAILED=()

# check DESCRIPTION CMD...: runs CMD; passes when it exits 0.
check() {
  local what=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    SYS_PASS=$((SYS_PASS + 1))
    printf 'ok      %s\n' "$what"
  else
    SYS_FAIL=$((SYS_FAIL + 1))
    SYS_FAILED+=("$what")
    printf 'FAIL    %s (exit %s)\n' "$what" "$rc"
    printf '%s\n' "$out" | tail -n 25 | sed 's/^/        | /'
  fi
  return 0
}

# check_eq DESCRIPTION EXPECTED CMD...: passes when CMD prints EXPECTED.
check_eq() {
  local what=$1 want=$2; shift 2
  check "$what" _check_eq "$want" "$@"
}
_check_eq() {
  local want=$1; shift
  local got
  got=$("$@") || { echo "command failed: $*"; echo "$got"; return 1; }
  if [ "$got" != "$want" ]; then
    printf 'expected: %s\n     got: %s\n' "$want" "$got"
    return 1
  fi
}

skip() {
  SYS_SKIP=$((SYS_SKIP + 1))
  printf 'SKIPPED: %s\n' "$*"
}

section() { printf '\n=== %s (t=%ss)\n' "$*" "$SECONDS"; }

summary() {
  printf '\n'
  if [ "$SYS_FAIL" -gt 0 ]; then
    printf 'failed checks:\n'
    printf '  - %s\n' "${SYS_FAILED[@]}"
  fi
  printf 'system-test: %d passed, %d failed, %d skipped\n' "$SYS_PASS" "$SYS_FAIL" "$SYS_SKIP"
  [ "$SYS_FAIL" -eq 0 ]
}
