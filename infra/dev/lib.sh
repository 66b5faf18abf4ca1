# Shared helpers of the development scripts. Sourced, not run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/target}"
PG_HOST=127.0.0.1
PG_PORT="${SHIFTCOVER_DEV_PG_PORT:-5432}"
REDIS_PORT="${SHIFTCOVER_DEV_REDIS_PORT:-6379}"

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

PG_URL_BASE() { echo "postgres://postgres@$PG_HOST:$PG_PORT"; }
pg_ready() { psql "$(PG_URL_BASE)/postgres" -qAtc 'select 1' >/dev/null 2>&1; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, check-function
    for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
    die "$1 did not become ready on 127.0.0.1"
}

# Where project-local services keep their data when the machine has none of its own.
DEV_DIR="${SHIFTCOVER_DEV_DIR:-/var/tmp/shiftcover-dev}"

# Runs a PostgreSQL server program as the postgres user when we are root (initdb refuses root).
pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# PostgreSQL on 127.0.0.1: the machine's own when it answers (trust auth, user postgres), else a
# project-local cluster under $DEV_DIR, installed (apt) and started here.
ensure_postgres() {
    pg_ready && return 0
    local bindir
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
        apt_install postgresql postgresql-client
        bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    fi
    command -v psql >/dev/null || apt_install postgresql-client
    if port_taken "$PG_PORT"; then
        say "port $PG_PORT is taken by a PostgreSQL we cannot use; using 54329"
        PG_PORT=54329
        pg_ready && { export_service_urls; return 0; }
    fi
    local data="$DEV_DIR/pg-$PG_PORT"
    mkdir -p "$DEV_DIR" && chmod 755 "$DEV_DIR"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "creating a project-local PostgreSQL cluster in $data"
        mkdir -p "$data"
        [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data"
        pg_as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    pg_as_owner "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $PG_PORT -k $data -c listen_addresses=127.0.0.1" start >/dev/null
    wait_for PostgreSQL pg_ready
    export_service_urls
}

# Redis on 127.0.0.1: the machine's own when it answers, else a project-local one.
ensure_redis() {
    redis_ready && return 0
    command -v redis-server >/dev/null || apt_install redis-server
    if port_taken "$REDIS_PORT"; then
        say "port $REDIS_PORT is taken by something that is not Redis; using 63799"
        REDIS_PORT=63799
        redis_ready && { export_service_urls; return 0; }
    fi
    mkdir -p "$DEV_DIR"
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$DEV_DIR" --logfile "$DEV_DIR/redis-$REDIS_PORT.log" --daemonize yes >/dev/null
    wait_for Redis redis_ready
    export_service_urls
}

# Points the binary and the tests at the services in use.
export_service_urls() {
    export SHIFTCOVER_TEST_DATABASE_URL="$(PG_URL_BASE)/postgres"
    export SHIFTCOVER_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    export SHIFTCOVER__REDIS__URL="${SHIFTCOVER__REDIS__URL:-redis://127.0.0.1:$REDIS_PORT/0}"
    export SHIFTCOVER__DATABASE__URL="${SHIFTCOVER__DATABASE__URL:-$(PG_URL_BASE)/shiftcover}"
}

ensure_services() {
    ensure_postgres
    ensure_redis
    export_service_urls
}

# Headless Chromium and its WebDriver for the back office's browser tests (Debian packages).
ensure_browser() {
    if command -v chromedriver >/dev/null && { command -v chromium >/dev/null \
        || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; }; then
        return 0
    fi
    apt_install chromium chromium-driver
}

# Node and the pinned GraphQL reference tools (graphql-js, the Relay compiler) that check the
# client documents in frontend-schema/; reinstalled from package-lock.json when it changes.
ensure_client_tools() {
    { command -v node >/dev/null && command -v npm >/dev/null; } || apt_install nodejs npm
    local dir="$ROOT/frontend-schema"
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}

# The application database, created when missing.
ensure_database() {
    local name="$1"
    if ! psql "$(PG_URL_BASE)/postgres" -qAtc \
        "select 1 from pg_database where datname = '$name'" | grep -q 1; then
        say "creating database $name"
        psql "$(PG_URL_BASE)/postgres" -qc "create database \"$name\"" >/dev/null
    fi
}
