#!/usr/bin/env bash
# Creates (once) the Python venv for the test clients in tests/python/ and
# installs tests/requirements.txt into it; re-installs only when the
# requirements change. Prints the venv's python path on stdout (everything
# else goes to stderr), so callers can do: PY=$(tests/python/setup.sh).
#
# Venv location: ${TICKRING_CI_CACHE:-/var/cache/tickring-ci}/venv
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
req="$here/../requirements.txt"
cache="${TICKRING_CI_CACHE:-/var/cache/tickring-ci}"
venv="$cache/venv"
stamp="$venv/.tickring-requirements.sha256"

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$cache"
    echo "setup.sh: creating venv $venv" >&2
    python3 -m venv "$venv" >&2
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup.sh: installing $req" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$req" >&2
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import websockets' >&2
echo "$venv/bin/python"
