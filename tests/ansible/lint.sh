#!/usr/bin/env bash
# Lints the Ansible content under ansible/: ansible-lint (production
# profile, offline: no Galaxy) and `ansible-playbook --syntax-check` of
# every playbook. The tools come from a cached venv
# (tests/python/setup.sh tests/ansible/requirements.txt ansible).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=$("$REPO/tests/python/setup.sh" "$REPO/tests/ansible/requirements.txt" ansible)
BIN=$(dirname "$PY")
export PATH=$BIN:$PATH
cd "$REPO/ansible"
# Keep ansible-lint's cache out of the work tree.
export ANSIBLE_HOME=${TICKRING_CI_CACHE:-/var/cache/tickring-ci}/ansible-home
t0=$SECONDS
rc=0
for p in site.yml upgrade.yml rollback.yml; do
  if ansible-playbook --syntax-check -i inventory/example/hosts.yml "$p" >/dev/null; then
    echo "ok      ansible-playbook --syntax-check $p"
  else
    echo "FAIL    ansible-playbook --syntax-check $p"; rc=1
  fi
done
if ansible-lint --offline --profile production --strict --nocolor; then
  echo "ok      ansible-lint --profile production"
else
  echo "FAIL    ansible-lint --profile production"; rc=1
fi
echo "ansible lint: done in $((SECONDS - t0)) s"
exit $rc
