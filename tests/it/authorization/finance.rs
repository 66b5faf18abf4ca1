//! Authorization entries for finance: drivers' statements (their own only), reconciliation, the
//! exceptions queue and the reports.
//! Reports are for finance and admin only; ops, drivers and partners are refused. No fixture: the reports run on
//! an empty ledger (empty but present), a day never reconciled has no summary (null), and the
//! exception mutations name an exception that does not exist (`NOT_FOUND` shows the guard let
//! the caller through).

use super::Entry;
use super::Expect::*;
use super::{Expect, FORBID, UNAUTH, by, drivers_only};
use crate::support::global_id;
use serde_json::json;

/// Finance and admin.
fn finance_only(allowed: Expect) -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, FORBID, FORBID, allowed, allowed)
}

pub(super) fn entries() -> Vec<Entry> {
    vec![
        Entry {
            field: "Query.statements",
            case: "own statements",
            doc: "{ statements(first: 2) { edges { cursor node { weekStart closingBalance { minor } movements { kind } } } } }",
            vars: |_, _| json!({}),
            judge: "/statements",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.statement",
            case: "own statement of a past week",
            doc: "{ statement(weekStart: \"2025-01-06\") { weekStart openingBalance { minor } pdfPath } }",
            vars: |_, _| json!({}),
            judge: "/statement",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.financeExports",
            case: "the newest files",
            doc: "{ financeExports(first: 5) { id status percent downloadPath } }",
            vars: |_, _| json!({}),
            judge: "/financeExports",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.financeExport",
            case: "a file that does not exist",
            doc: "{ financeExport(id: \"RmluYW5jZUV4cG9ydDowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA\") { id } }",
            vars: |_, _| json!({}),
            judge: "/financeExport",
            expect: finance_only(Hidden),
        },
        Entry {
            field: "Mutation.requestBordereauExport",
            case: "a past month",
            doc: "mutation { requestBordereauExport(input: { month: \"2025-01\" }) { export { id status } userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/requestBordereauExport",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.reconciliationSummary",
            case: "a past day never reconciled",
            doc: "{ reconciliationSummary(day: \"2025-01-15\") { day statuses { status count } } }",
            vars: |_, _| json!({}),
            judge: "/reconciliationSummary",
            expect: finance_only(Hidden),
        },
        Entry {
            field: "Query.reconciliationItems",
            case: "a past day",
            doc: "{ reconciliationItems(day: \"2025-01-15\", status: MISSING_IN_LEDGER) { status detail } }",
            vars: |_, _| json!({}),
            judge: "/reconciliationItems",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.financeExceptions",
            case: "open exceptions",
            doc: "{ financeExceptions(status: OPEN, first: 5) { edges { node { id kind notes { body } } } } }",
            vars: |_, _| json!({}),
            judge: "/financeExceptions",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.trialBalance",
            case: "a past day",
            doc: "{ trialBalance(at: \"2025-01-15\") { balances lines { accountKind balance } } }",
            vars: |_, _| json!({}),
            judge: "/trialBalance",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.iptPayable",
            case: "a past quarter",
            doc: "{ iptPayable(from: \"2025-01\", to: \"2025-03\") { month payable } }",
            vars: |_, _| json!({}),
            judge: "/iptPayable",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Query.bordereau",
            case: "a past month",
            doc: "{ bordereau(month: \"2025-01\") { month lineCount totals { grossPremium } lines { certificateRef } } }",
            vars: |_, _| json!({}),
            judge: "/bordereau",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Mutation.reconcileStripeDay",
            case: "a past day, without importing",
            doc: "mutation { reconcileStripeDay(input: { day: \"2025-01-15\", importFromStripe: false }) { summary { day } userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/reconcileStripeDay",
            expect: finance_only(Allowed),
        },
        Entry {
            field: "Mutation.noteFinanceException",
            case: "an exception that does not exist",
            doc: "mutation($id: ID!) { noteFinanceException(input: { id: $id, body: \"Asked Stripe\" }) { exception { id } userErrors { code } } }",
            vars: |_, _| json!({ "id": global_id("FinanceException", &uuid::Uuid::nil()) }),
            judge: "/noteFinanceException",
            expect: finance_only(Refused("NOT_FOUND")),
        },
        Entry {
            field: "Mutation.resolveFinanceException",
            case: "an exception that does not exist",
            doc: "mutation($id: ID!) { resolveFinanceException(input: { id: $id, reason: \"Explained\" }) { exception { id } userErrors { code } } }",
            vars: |_, _| json!({ "id": global_id("FinanceException", &uuid::Uuid::nil()) }),
            judge: "/resolveFinanceException",
            expect: finance_only(Refused("NOT_FOUND")),
        },
    ]
}
