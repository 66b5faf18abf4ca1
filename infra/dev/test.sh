#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the dependency rules of the workspace, the client
# documents against the schema with graphql-js and the Relay compiler, the whole test suite
# against real PostgreSQL and Redis (installed and started when missing), README.md's walkthrough
# against infra/dev/run.sh, the GraphQL fuzz run and the fault suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
start=$(date +%s)

ensure_services

say "localstripe (the fake Stripe the payment tests run against)"
"$ROOT/infra/dev/localstripe.sh" install

say "headless Chromium and chromedriver (the back office's browser tests)"
ensure_browser
# Screenshots and other files tests leave for people to look at.
export SHIFTCOVER_ARTEFACTS_DIR="${SHIFTCOVER_ARTEFACTS_DIR:-$CARGO_TARGET_DIR/artefacts}"

say "formatting"
cargo fmt --all --check

say "lints"
cargo clippy --quiet --workspace --all-targets -- -D warnings

say "dependency rules"
"$ROOT/infra/dev/check-deps.sh"

say "deployment manifests and migration safety (expand/contract)"
"$ROOT/infra/dev/check-manifests.sh"
python3 "$ROOT/infra/dev/check-migrations.py" --self-test | grep -v "^ok "
python3 "$ROOT/infra/dev/check-migrations.py"

say "client documents (graphql-js and the Relay compiler against frontend-schema/schema.graphql)"
ensure_client_tools
node "$ROOT/frontend-schema/check-documents.mjs"

say "tests"
# Every test database is kept until the suite ends (apps/testkit lists them in this file), so that
# the ledger check below sees every money movement any test made; then they are dropped.
kept="$CARGO_TARGET_DIR/test-databases.$$.txt"
mkdir -p "$CARGO_TARGET_DIR" && : > "$kept"
drop_kept() {
    [ -s "$kept" ] || { rm -f "$kept"; return 0; }
    # In parallel: each DROP DATABASE waits for a checkpoint, and concurrent ones share it.
    sort -u "$kept" | grep -E '^sc_test_[0-9a-f]{32}$' \
        | xargs -r -P 16 -I{} psql -q "$(PG_URL_BASE)/postgres" \
            -c 'DROP DATABASE IF EXISTS {} WITH (FORCE)' >/dev/null 2>&1 || true
    rm -f "$kept"
}
trap drop_kept EXIT
tests_ok=true
if cargo nextest --version >/dev/null 2>&1; then
    SHIFTCOVER_TEST_KEEP_DATABASES="$kept" cargo nextest run --workspace --no-fail-fast \
        --status-level fail --final-status-level slow || tests_ok=false
else
    SHIFTCOVER_TEST_KEEP_DATABASES="$kept" cargo test --workspace --no-fail-fast || tests_ok=false
fi

say "ledger check over the $(sort -u "$kept" | wc -l) databases the tests left"
# Each ledger transaction sums to zero, each wallet's balance equals its entries, each top-up and
# refund is booked once (`shiftcover ledger check`, the command finance runs too).
existing=$(psql "$(PG_URL_BASE)/postgres" -qAtc \
    "select datname from pg_database where datname like 'sc\_test\_%'" | sort)
checks=()
for db in $(sort -u "$kept" | comm -12 - <(echo "$existing")); do
    checks+=(--database-url "$(PG_URL_BASE)/$db")
done
ledger_ok=true
if [ ${#checks[@]} -gt 0 ]; then
    # The binary the tests just built (the end-to-end tests run it), else a build of it.
    bin="$CARGO_TARGET_DIR/debug/shiftcover"
    [ -x "$bin" ] || { cargo build -q --bin shiftcover && bin="$CARGO_TARGET_DIR/debug/shiftcover"; }
    SHIFTCOVER__ENVIRONMENT=test SHIFTCOVER__LOG__FILTER=error \
        "$bin" ledger check "${checks[@]}" || ledger_ok=false
fi
drop_kept
$tests_ok || die "tests failed"
$ledger_ok || die "the ledger check failed"

say "the README's walkthrough against infra/dev/run.sh"
"$ROOT/infra/dev/walkthrough.sh"

# Production readiness: the GraphQL fuzz run (schemathesis against /graphql as every kind of
# caller) and the fault suite (restarts, SIGKILLs, a slow and failing Stripe and webhook floods
# under traffic). Each prints its figures; see README.md.
say "GraphQL fuzz run"
"$ROOT/infra/dev/fuzz.sh"
"$ROOT/infra/dev/fault-suite.sh"

say "screenshots of the back office: $SHIFTCOVER_ARTEFACTS_DIR/admin"
say "all checks passed in $(( $(date +%s) - start ))s"
