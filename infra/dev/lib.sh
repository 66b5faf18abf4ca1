# Shared helpers of the development scripts. Sourced, not run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/target}"
PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $* (install it yourself, or run as root)"
    fi
}

apt_install() {
    say "installing $* (apt)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { psql "postgres://postgres@$PG_HOST:$PG_PORT/postgres" -qAtc 'select 1' >/dev/null 2>&1; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

wait_for() { # name, check-function
    for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
    die "$1 did not become ready on 127.0.0.1"
}

# PostgreSQL and Redis on 127.0.0.1, installed and started when missing.
ensure_services() {
    if ! pg_ready; then
        command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
        local version
        version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
        if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
            say "creating PostgreSQL $version cluster"
            as_root pg_createcluster "$version" main >/dev/null
        fi
        say "starting PostgreSQL $version"
        as_root pg_ctlcluster "$version" main start 2>/dev/null || true
        # A fresh Debian cluster asks for passwords over TCP; a development machine trusts loopback.
        if ! pg_ready; then
            local hba
            hba="$(as_root runuser -u postgres -- psql -qAtc 'show hba_file' 2>/dev/null || true)"
            if [ -n "$hba" ] && ! as_root grep -q 'shiftcover-dev' "$hba"; then
                say "allowing trust authentication on loopback for development ($hba)"
                as_root sed -i '1i host all all 127.0.0.1/32 trust # shiftcover-dev\nhost all all ::1/128 trust # shiftcover-dev' "$hba"
                as_root pg_ctlcluster "$version" main reload
            fi
        fi
        wait_for PostgreSQL pg_ready
    fi
    if ! redis_ready; then
        command -v redis-server >/dev/null || apt_install redis-server
        say "starting Redis"
        if command -v service >/dev/null && as_root service redis-server start >/dev/null 2>&1; then :; else
            redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --daemonize yes >/dev/null
        fi
        wait_for Redis redis_ready
    fi
}

# The application database, created when missing.
ensure_database() {
    local name="$1"
    if ! psql "postgres://postgres@$PG_HOST:$PG_PORT/postgres" -qAtc \
        "select 1 from pg_database where datname = '$name'" | grep -q 1; then
        say "creating database $name"
        psql "postgres://postgres@$PG_HOST:$PG_PORT/postgres" -qc "create database \"$name\"" >/dev/null
    fi
}
