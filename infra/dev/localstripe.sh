#!/usr/bin/env bash
# localstripe, the stateful fake Stripe server the tests point the real Stripe client at.
#
#   infra/dev/localstripe.sh install       create the virtualenv when missing (pip install localstripe)
#   infra/dev/localstripe.sh python        install if needed, then print the venv's python path
#   infra/dev/localstripe.sh run [PORT]    install if needed, then run the launcher in the foreground
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

installed() { [ -x "$PY" ] && "$PY" -c 'import localstripe' >/dev/null 2>&1; }

install() {
    installed && return 0
    local base
    base="$(command -v python3 || true)"
    [ -n "$base" ] || die "python3 is needed for localstripe (apt-get install python3 python3-venv)"
    mkdir -p "$(dirname "$VENV")"
    # Several test processes may call this at once: one builds, the others wait for it.
    local lock="$VENV.lock"
    exec 9>"$lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! installed; then
        say "creating $VENV with localstripe $LOCALSTRIPE_VERSION"
        rm -rf "$VENV"
        "$base" -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$PY" -m pip install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION" >&2
    fi
    exec 9>&-
    installed || die "localstripe did not install into $VENV"
}

case "${1:-python}" in
    install) install ;;
    python) install; echo "$PY" ;;
    run)
        install
        exec "$PY" "$HERE/localstripe_launcher.py" --port "${2:-8420}" --from-scratch
        ;;
    *) die "usage: $0 install|python|run [PORT]" ;;
esac
