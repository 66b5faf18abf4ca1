#!/usr/bin/env bash
# GraphQL fuzz run: Schemathesis writes queries and mutations from the schema and sends them to a
# `shiftcover serve` started here on a throwaway database, as an anonymous caller, a signed-in
# driver, the demo partner's test API key and ops, finance and admin staff. An HTTP 5xx, an answer
# that is not JSON, an INTERNAL_SERVER_ERROR, a dropped connection, the server dying, /healthz not
# answering 200 at the end or an unbalanced ledger fails the run (exit 1), with the query and
# variables that reproduce each failure. Business errors (userErrors, BAD_USER_INPUT,
# UNAUTHENTICATED, FORBIDDEN, validation errors) are fine. See infra/dev/fuzz/README.md.
#
#   infra/dev/fuzz.sh
#
#   SHIFTCOVER_FUZZ_EXAMPLES  examples per operation and caller (default 40)
#   SHIFTCOVER_FUZZ_SECONDS   the most the fuzzing itself takes (default 140); set-up and the
#                             checks after it add a few seconds
#   SHIFTCOVER_FUZZ_SEED      the random seed (every run prints its own; reuse it to replay)
#   SHIFTCOVER_FUZZ_VENV      the virtualenv (default ${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/fuzz-venv)
#   SHIFTCOVER_FUZZ_REPORT    the JSON report (default $SHIFTCOVER_ARTEFACTS_DIR/fuzz/report.json,
#                             else $CARGO_TARGET_DIR/artefacts/fuzz/report.json)
#   SHIFTCOVER_FUZZ_KEEP=1    keep the database, the server log and the schema after the run
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
started=$(date +%s)

FUZZ_DIR="$ROOT/infra/dev/fuzz"
VENV="${SHIFTCOVER_FUZZ_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/fuzz-venv}"
PY="$VENV/bin/python"
EXAMPLES="${SHIFTCOVER_FUZZ_EXAMPLES:-40}"
SECONDS_BUDGET="${SHIFTCOVER_FUZZ_SECONDS:-140}"
ARTEFACTS="${SHIFTCOVER_ARTEFACTS_DIR:-$CARGO_TARGET_DIR/artefacts}"
REPORT="${SHIFTCOVER_FUZZ_REPORT:-$ARTEFACTS/fuzz/report.json}"
case "$REPORT" in /*) ;; *) REPORT="$ROOT/$REPORT" ;; esac

# The virtualenv holds exactly infra/dev/fuzz/requirements.txt; a change to that file rebuilds it.
venv_ready() {
    [ -x "$PY" ] && cmp -s "$FUZZ_DIR/requirements.txt" "$VENV/.requirements.txt" \
        && "$PY" -c 'import schemathesis' >/dev/null 2>&1
}
VENV_AFTER_INSTALL() { cp "$FUZZ_DIR/requirements.txt" "$VENV/.requirements.txt"; }
install_venv() {
    make_venv "$VENV" venv_ready "schemathesis (infra/dev/fuzz/requirements.txt)" \
        -r "$FUZZ_DIR/requirements.txt"
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The HTTP status of a GET (000 when nothing answers).
http_status() {
    "$PY" - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

ensure_services
install_venv
"$ROOT/infra/dev/localstripe.sh" install

bin="$CARGO_TARGET_DIR/debug/shiftcover"
if [ ! -x "$bin" ]; then
    say "building"
    cargo build -q --bin shiftcover
fi

db="sc_fuzz_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
work="$(mktemp -d "${TMPDIR:-/tmp}/shiftcover-fuzz.XXXXXX")"
server_pid=""
stripe_pid=""
cleanup() {
    local pid
    for pid in $server_pid $stripe_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${SHIFTCOVER_FUZZ_KEEP:-0}" = 1 ]; then
        say "kept: database $db, files in $work"
        return
    fi
    psql -q "$(PG_URL_BASE)/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    # The server's rate-limit counters, under this run's key prefix.
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" EVAL "local c = '0' repeat
        local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1]
        for _, k in ipairs(r[2]) do redis.call('DEL', k) end until c == '0'" 0 "$db:*" \
        >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(free_port)"
stripe_port="$(free_port)"
nothing_port="$(free_port)" # Twilio and Mailgun point here: nothing listens, nothing leaves
server_env=(
    -u SHIFTCOVER_CONFIG
    SHIFTCOVER__ENVIRONMENT=development # the seed prints its secrets; sign-in by SMS code works
    SHIFTCOVER__DATABASE__URL="$(PG_URL_BASE)/$db"
    SHIFTCOVER__REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0"
    SHIFTCOVER__REDIS__KEY_PREFIX="$db"
    SHIFTCOVER__HTTP__BIND="127.0.0.1:$port"
    SHIFTCOVER__HTTP__PUBLIC_URL="http://127.0.0.1:$port"
    SHIFTCOVER__STRIPE__BASE_URL="http://127.0.0.1:$stripe_port"
    SHIFTCOVER__TWILIO__BASE_URL="http://127.0.0.1:$nothing_port"
    SHIFTCOVER__MAILGUN__BASE_URL="http://127.0.0.1:$nothing_port"
    SHIFTCOVER__SENTRY__DSN=
    SHIFTCOVER__CLAIMS__PHOTO_DIR="$work/claim-photos"
    # The partner key is fuzzed at full speed: its per-minute limits would answer 429s instead.
    SHIFTCOVER__ACCOUNTS__PARTNER_KEY_REQUESTS_PER_MINUTE=1000000
    SHIFTCOVER__ACCOUNTS__PARTNER_REQUESTS_PER_MINUTE=1000000
    SHIFTCOVER__LOG__FORMAT=json
    SHIFTCOVER__LOG__FILTER=warn
)
sc() { env "${server_env[@]}" "$bin" "$@"; }

say "database $db: migrations and demo data"
psql -q "$(PG_URL_BASE)/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null
sc migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; die "migrate failed"; }
seeded="$(sc seed 2>"$work/seed.log")" || { cat "$work/seed.log" >&2; die "seed failed"; }
# The seed's development lines: "partner …: test key sck_…", "ops user E: password P (sign in …)".
partner_key="$(sed -n 's/^partner .*: test key \(sck_[A-Za-z0-9_]*\)$/\1/p' <<<"$seeded")"
ops_email="$(sed -n 's/^ops user \([^:]*\): password .*/\1/p' <<<"$seeded")"
ops_password="$(sed -n 's/^ops user [^:]*: password \([^ ]*\) (sign in at .*$/\1/p' <<<"$seeded")"
# Each caller is part of the run: a seed that stopped printing one is a broken run, not a
# smaller one.
[ -n "$partner_key" ] || die "the seed printed no partner test key (output: $seeded)"
[ -n "$ops_password" ] || die "the seed printed no ops password (output: $seeded)"
staff=()
[ -n "$ops_password" ] && staff+=(--staff "ops:$ops_email:$ops_password")
for role in finance admin; do
    password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    SHIFTCOVER_STAFF_PASSWORD="$password" sc staff create --email "$role@fuzz.shiftcover.example" \
        --role "$role" >"$work/staff-$role.log" 2>&1 \
        || { cat "$work/staff-$role.log" >&2; die "could not create the $role user"; }
    staff+=(--staff "$role:$role@fuzz.shiftcover.example:$password")
done
sc schema >"$work/schema.graphql" 2>"$work/schema.log" || { cat "$work/schema.log" >&2; die "schema failed"; }

say "localstripe on 127.0.0.1:$stripe_port, the server on 127.0.0.1:$port"
"$ROOT/infra/dev/localstripe.sh" run "$stripe_port" >"$work/localstripe.log" 2>&1 &
stripe_pid=$!
# Not through `sc`: a function in the background is a subshell, and $! would not be the server.
env "${server_env[@]}" "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for i in $(seq 1 120); do
    alive "$server_pid" || { tail -20 "$work/server.log" >&2; die "the server exited at start"; }
    alive "$stripe_pid" || { tail -20 "$work/localstripe.log" >&2; die "localstripe exited at start"; }
    [ "$(http_status "http://127.0.0.1:$port/readyz")" = 200 ] && port_taken "$stripe_port" && break
    [ "$i" = 120 ] && { tail -20 "$work/server.log" >&2; die "the server or localstripe was not ready in 60 s"; }
    sleep 0.5
done

fuzz_rc=0
(cd "$work" && exec "$PY" "$FUZZ_DIR/fuzz.py" \
    --url "http://127.0.0.1:$port/graphql" \
    --schema "$work/schema.graphql" \
    --database-url "$(PG_URL_BASE)/$db" \
    ${partner_key:+--partner-key "$partner_key"} \
    "${staff[@]}" \
    --examples "$EXAMPLES" \
    --seconds "$SECONDS_BUDGET" \
    ${SHIFTCOVER_FUZZ_SEED:+--seed "$SHIFTCOVER_FUZZ_SEED"} \
    --server-pid "$server_pid" \
    --server-log "$work/server.log" \
    --report "$REPORT") || fuzz_rc=$?

problems=()
[ "$fuzz_rc" = 1 ] && problems+=("the fuzzer found failures (above)")
[ "$fuzz_rc" -gt 1 ] && problems+=("the fuzzer could not run (exit $fuzz_rc)")
if alive "$server_pid"; then
    status="$(http_status "http://127.0.0.1:$port/healthz")"
    [ "$status" = 200 ] || problems+=("/healthz answered $status after the fuzzing")
else
    wait "$server_pid" 2>/dev/null && code=0 || code=$?
    echo "the end of the server's log:" >&2
    tail -30 "$work/server.log" | sed 's/^/    /' >&2
    problems+=("the server process died (exit $code); the end of its log is above")
fi
server_errors="$(grep -c '"level":"ERROR"' "$work/server.log" || true)"
say "ledger check of $db after the fuzzing"
if sc ledger check >"$work/ledger.log" 2>&1; then
    echo "the ledger balances" >&2
else
    sed 's/^/    /' "$work/ledger.log" >&2
    problems+=("the ledger check failed after the fuzzing")
fi

echo
echo "GraphQL fuzz run: $(( $(date +%s) - started )) s in all; server log: $server_errors error lines; report: $REPORT"
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "FAILED: $p"; done
    exit 1
fi
echo "passed"
