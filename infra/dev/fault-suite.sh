#!/usr/bin/env bash
# The fault suite (tests/faults): a whole ShiftCover — two API and two worker processes, its own
# PostgreSQL cluster and Redis, localstripe behind a proxy that can slow or fail it, Twilio and
# Mailgun fakes — under steady driver and partner traffic while PostgreSQL and Redis restart,
# processes are SIGKILLed, Stripe turns slow then failing, and Stripe webhooks arrive ten times
# over. Then it checks that no charge, top-up, message or ledger posting was lost or doubled,
# the ledger balances, the day's Stripe reconciliation matches, and the API was back within
# seconds of each fault. Prints the figures of every phase; exits non-zero on a failed check.
#
#   infra/dev/fault-suite.sh
#
# Knobs: FAULTS_APP_DRIVERS (12), FAULTS_PARTNER_DRIVERS (8), FAULTS_SETTLE_SECS (8, the calm
# after each fault), FAULTS_PAUSE_MS (400, a driver's pause between calls),
# FAULTS_RECOVERY_LIMIT_MS (10000). The report and each process's log go to
# $SHIFTCOVER_ARTEFACTS_DIR/faults.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The suite starts PostgreSQL and Redis servers of its own (it restarts them), from the same
# packages the machine's services come from: installed here when missing.
ensure_services
"$ROOT/infra/dev/localstripe.sh" install
export SHIFTCOVER_ARTEFACTS_DIR="${SHIFTCOVER_ARTEFACTS_DIR:-$CARGO_TARGET_DIR/artefacts}"

say "fault suite"
cargo test --quiet --test faults
