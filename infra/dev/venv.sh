# Python virtualenvs of the development scripts. Sourced, not run; the caller defines say and die.
# shellcheck shell=bash

# make_venv VENV READY WHAT PIP_ARGS…
#
# Makes the virtualenv VENV with `pip install PIP_ARGS…` unless the function READY already
# succeeds, then checks READY again. Several processes may ask at once: one builds (under a lock
# beside VENV), the others wait and reuse it. WHAT names the contents in messages. When the
# function VENV_AFTER_INSTALL is defined it runs after pip, before the check (to record what was
# installed, for example).
make_venv() {
    local venv="$1" ready="$2" what="$3"
    shift 3
    "$ready" && return 0
    local base
    base="$(command -v python3 || true)"
    [ -n "$base" ] || die "python3 is needed for $what (apt-get install python3 python3-venv)"
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! "$ready"; then
        say "creating $venv with $what"
        rm -rf "$venv"
        "$base" -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
        if declare -F VENV_AFTER_INSTALL >/dev/null; then VENV_AFTER_INSTALL; fi
    fi
    exec 9>&-
    "$ready" || die "$what did not install into $venv"
}
