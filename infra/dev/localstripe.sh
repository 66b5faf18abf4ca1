#!/usr/bin/env bash
# localstripe, the stateful fake Stripe server the tests point the real Stripe client at.
#
#   infra/dev/localstripe.sh install       create the virtualenv when missing (pip install localstripe)
#   infra/dev/localstripe.sh python        install if needed, then print the venv's python path
#   infra/dev/localstripe.sh run [PORT] [STORE]
#                                          install if needed, then run the launcher in the foreground:
#                                          from scratch, or keeping its state in the file STORE
#
# The virtualenv lives under ${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/venv (override with
# SHIFTCOVER_LOCALSTRIPE_VENV). Tests find its python the same way, or through
# SHIFTCOVER_LOCALSTRIPE_PYTHON.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SHIFTCOVER_LOCALSTRIPE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/venv}"
PY="$VENV/bin/python"
LOCALSTRIPE_VERSION="${SHIFTCOVER_LOCALSTRIPE_VERSION:-1.15.10}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=venv.sh
source "$HERE/venv.sh"

installed() { [ -x "$PY" ] && "$PY" -c 'import localstripe' >/dev/null 2>&1; }

install() {
    make_venv "$VENV" installed "localstripe $LOCALSTRIPE_VERSION" "localstripe==$LOCALSTRIPE_VERSION"
}

case "${1:-python}" in
    install) install ;;
    python) install; echo "$PY" ;;
    run)
        install
        if [ -n "${3:-}" ]; then
            exec "$PY" "$HERE/localstripe_launcher.py" --port "${2:-8420}" --store "$3"
        fi
        exec "$PY" "$HERE/localstripe_launcher.py" --port "${2:-8420}" --from-scratch
        ;;
    *) die "usage: $0 install|python|run [PORT] [STORE]" ;;
esac
