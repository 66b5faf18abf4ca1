#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the dependency rules of the workspace, and the whole
# test suite against real PostgreSQL and Redis (installed and started when missing).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
start=$(date +%s)

ensure_services

say "localstripe (the fake Stripe the payment tests run against)"
"$ROOT/infra/dev/localstripe.sh" install

say "formatting"
cargo fmt --all --check

say "lints"
cargo clippy --quiet --workspace --all-targets -- -D warnings

say "dependency rules"
"$ROOT/infra/dev/check-deps.sh"

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --status-level fail --final-status-level slow
else
    cargo test --workspace --no-fail-fast
fi

say "all checks passed in $(( $(date +%s) - start ))s"
