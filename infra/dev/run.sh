#!/usr/bin/env bash
# Runs the whole of ShiftCover on this machine, ready to use: PostgreSQL and Redis (installed and
# started when missing), the migrations, the demo data (its credentials are printed), localstripe
# (the fake Stripe, with its webhooks sent to the API), the API on http://127.0.0.1:8080 with the
# development inbox (texts, emails and the demo partner's webhooks at /dev/inbox) and the job
# workers. Ctrl-C stops everything it started.
#
# Settings come from infra/dev/dev.env; a SHIFTCOVER__… variable already set wins. Other ports:
# SHIFTCOVER_DEV_API_PORT (8080) and SHIFTCOVER_DEV_STRIPE_PORT (8420).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_services
# curl talks to localstripe here; jq reads answers in the README's walkthrough.
command -v curl >/dev/null || apt_install curl
command -v jq >/dev/null || apt_install jq
# The database the settings name (shiftcover unless SHIFTCOVER__DATABASE__URL says otherwise).
db="${SHIFTCOVER__DATABASE__URL##*/}"
db="${db%%\?*}"
ensure_database "$db"

API_PORT="${SHIFTCOVER_DEV_API_PORT:-8080}"
STRIPE_PORT="${SHIFTCOVER_DEV_STRIPE_PORT:-8420}"
# The development settings, each unless already set (values may use ${SHIFTCOVER_DEV_…:-…}).
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key="${line%%=*}"
    [ -n "${!key+set}" ] && continue
    eval "export $key=\"${line#*=}\""
done <"$ROOT/infra/dev/dev.env"
API="$SHIFTCOVER__HTTP__PUBLIC_URL"

for port in "$API_PORT" "$STRIPE_PORT"; do
    port_taken "$port" && die "port $port is in use (set SHIFTCOVER_DEV_API_PORT or SHIFTCOVER_DEV_STRIPE_PORT)"
done

say "building"
cargo build --quiet --bin shiftcover
bin="$CARGO_TARGET_DIR/debug/shiftcover"

pids=()
stop() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

say "starting localstripe on 127.0.0.1:$STRIPE_PORT"
"$ROOT/infra/dev/localstripe.sh" install
logs="$DEV_DIR/logs"
mkdir -p "$logs"
# localstripe keeps its state beside the database's (the drivers' Stripe customers and cards
# must still be there next time); a new database starts a new store.
store="$DEV_DIR/localstripe-$db.pickle"
psql "$(PG_URL_BASE)/$db" -qAtc "select 1 from stripe_customers limit 1" 2>/dev/null | grep -q 1 ||
    rm -f "$store"
"$ROOT/infra/dev/localstripe.sh" run "$STRIPE_PORT" "$store" >"$logs/localstripe.log" 2>&1 &
pids+=($!)
stripe_ready() { curl -fs -o /dev/null -u sk_test_development: "http://127.0.0.1:$STRIPE_PORT/v1/customers"; }
wait_for localstripe stripe_ready
# Stripe's webhooks (payment_intent.succeeded settles a top-up) go to the API, signed with its
# secret. localstripe starts from scratch every time, so this is done on every run.
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$STRIPE_PORT/_config/webhooks/shiftcover-dev" \
    --data-urlencode "url=$API/webhooks/stripe" \
    --data-urlencode "secret=${SHIFTCOVER__STRIPE__WEBHOOK_SECRET:-whsec_development}" ||
    die "localstripe refused the webhook endpoint (see $logs/localstripe.log)"

say "migrating"
"$bin" migrate
say "loading demo data"
"$bin" seed

"$bin" work & pids+=($!)
"$bin" serve & pids+=($!)
api_ready() { curl -fs -o /dev/null "$API/healthz"; }
wait_for "the API" api_ready

say "ShiftCover is running — Ctrl-C stops it"
cat >&2 <<EOF
    GraphQL           $API/graphql (the IDE: open it in a browser)
    inbox             $API/dev/inbox (texts, emails, partner webhooks)
    back office       $API/admin (the staff users printed above)
    localstripe       http://127.0.0.1:$STRIPE_PORT (log: $logs/localstripe.log)
    walkthrough       README.md, "The first hour"
EOF
wait -n "${pids[@]}"
