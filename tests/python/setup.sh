#!/usr/bin/env bash
# Creates (once) a Python venv of test tools and installs a requirements
# file into it; re-installs only when the requirements change. Prints the
# venv's python path on stdout (everything else goes to stderr), so callers
# can do: PY=$(tests/python/setup.sh).
#
#   tests/python/setup.sh                      # tests/requirements.txt -> venv
#   tests/python/setup.sh REQUIREMENTS NAME    # REQUIREMENTS -> venv-NAME
#
# One venv per tool set (the WebSocket test clients, Ansible, the
# Kubernetes validators...), so a heavy tool never slows the others' setup.
# Venvs live in ${TICKRING_CI_CACHE:-/var/cache/tickring-ci}/, which a new
# machine simply rebuilds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req=${1:-$here/../requirements.txt}
name=${2:-}
cache="${TICKRING_CI_CACHE:-/var/cache/tickring-ci}"
venv="$cache/venv${name:+-$name}"
stamp="$venv/.tickring-requirements.sha256"

[ -f "$req" ] || { echo "setup.sh: no requirements file $req" >&2; exit 2; }
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$cache"
    echo "setup.sh: creating venv $venv" >&2
    python3 -m venv "$venv" >&2
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup.sh: installing $req into $venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$req" >&2
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -m pip check >&2
echo "$venv/bin/python"
