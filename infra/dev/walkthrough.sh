#!/usr/bin/env bash
# Runs the walkthrough in README.md ("The first hour": the shell blocks between the
# walkthrough:begin and walkthrough:end markers, exactly as written) against a fresh
# infra/dev/run.sh, and fails if any step does. run.sh gets a database and Redis prefix of its
# own (dropped first, so the demo data is new) and ports that are free:
# SHIFTCOVER_DEV_API_PORT (18080) and SHIFTCOVER_DEV_STRIPE_PORT (18420).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_services
export SHIFTCOVER_DEV_API_PORT="${SHIFTCOVER_DEV_API_PORT:-18080}"
export SHIFTCOVER_DEV_STRIPE_PORT="${SHIFTCOVER_DEV_STRIPE_PORT:-18420}"
db=shiftcover_walkthrough
PGOPTIONS='--client-min-messages=warning' psql "$(PG_URL_BASE)/postgres" -qc \
    "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
export SHIFTCOVER__DATABASE__URL="$(PG_URL_BASE)/$db"
export SHIFTCOVER__REDIS__KEY_PREFIX="walkthrough-$$"
API="http://127.0.0.1:$SHIFTCOVER_DEV_API_PORT"
STRIPE="http://127.0.0.1:$SHIFTCOVER_DEV_STRIPE_PORT"

script="$(mktemp)"
log="$(mktemp)"
awk '/<!-- walkthrough:begin -->/ { on = 1; next }
     /<!-- walkthrough:end -->/   { on = 0 }
     on && /^```sh$/ { code = 1; next }
     on && /^```$/   { code = 0; next }
     on && code' README.md >"$script"
[ -s "$script" ] || die "no walkthrough found in README.md"

say "starting infra/dev/run.sh (log: $log)"
setsid "$ROOT/infra/dev/run.sh" >"$log" 2>&1 &
run_pid=$!
finish() {
    kill -INT -- "-$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
    psql "$(PG_URL_BASE)/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$SHIFTCOVER__REDIS__KEY_PREFIX*" \
        | xargs -r redis-cli -h 127.0.0.1 -p "$REDIS_PORT" del >/dev/null 2>&1 || true
    rm -f "$script" "$DEV_DIR/localstripe-$db.pickle"
}
trap finish EXIT
# The first run builds the binary; later ones start in seconds.
for _ in $(seq 1 1800); do
    curl -fs -o /dev/null "$API/healthz" && grep -q 'ShiftCover is running' "$log" && break
    kill -0 "$run_pid" 2>/dev/null || { cat "$log" >&2; die "run.sh stopped"; }
    sleep 1
done
curl -fs -o /dev/null "$API/healthz" || die "the API did not start (see $log)"

say "the README's walkthrough ($(grep -c . "$script") lines)"
started=$(date +%s)
# What each step answers is shown; a step that fails is named with its line in the script.
if API="$API" STRIPE="$STRIPE" bash -euo pipefail -c \
    "trap 'echo \"walkthrough step failed: \$BASH_COMMAND\" >&2' ERR; source '$script'"; then
    say "walkthrough passed in $(( $(date +%s) - started ))s"
    rm -f "$log"
else
    die "the walkthrough failed (above; run.sh's log: $log)"
fi
