#!/usr/bin/env bash
# Runs ShiftCover on this machine: PostgreSQL and Redis (installed and started when missing), the
# migrations, the demo data, the API on http://127.0.0.1:8080 and the job workers. Ctrl-C stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_services
ensure_database shiftcover

export SHIFTCOVER__LOG__FORMAT="${SHIFTCOVER__LOG__FORMAT:-pretty}"

say "building"
cargo build --quiet --bin shiftcover
bin="$CARGO_TARGET_DIR/debug/shiftcover"

say "migrating"
"$bin" migrate
say "loading demo data"
"$bin" seed

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
"$bin" work & pids+=($!)
"$bin" serve & pids+=($!)
say "API on ${SHIFTCOVER__HTTP__PUBLIC_URL:-http://127.0.0.1:8080}/graphql — Ctrl-C to stop"
wait -n "${pids[@]}"
