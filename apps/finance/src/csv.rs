//! CSV renderings of the reports (RFC 4180: comma-separated, CRLF line ends, fields quoted when
//! they hold a comma, quote or line break; amounts in minor units, as integers).
//!
//! Fields that begin with `=`, `+`, `-` or `@` and are not numbers are prefixed with `'` so a
//! spreadsheet does not run them as formulas (names and notes come from people).

use crate::reconcile::{ReconItem, ReconSummary};
use crate::reports::{Bordereau, BordereauLine, IptMonth, TrialBalance};

fn field(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@']) && s.parse::<i64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn row(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// The bordereau: a header, one row per line, then one `TOTAL` row per currency.
pub fn bordereau_csv(b: &Bordereau) -> String {
    let mut out = String::new();
    bordereau_csv_header(&mut out);
    for l in &b.lines {
        bordereau_csv_line(&mut out, &b.month, l);
    }
    bordereau_csv_totals(&mut out, b);
    out
}

/// The bordereau's header row.
pub fn bordereau_csv_header(out: &mut String) {
    row(
        out,
        &[
            "month",
            "booked_at",
            "transaction_type",
            "certificate_ref",
            "insured",
            "insured_id",
            "vehicle_registration",
            "vehicle",
            "cover_start",
            "cover_end",
            "currency",
            "gross_premium",
            "commission",
            "ipt_rate_bp",
            "ipt",
            "net_premium_due",
            "ledger_transaction_id",
        ]
        .map(String::from),
    );
}

/// One bordereau line as a row.
pub fn bordereau_csv_line(out: &mut String, month: &str, l: &BordereauLine) {
    row(
        out,
        &[
            month.to_owned(),
            l.booked_at.to_rfc3339(),
            l.transaction_type.clone(),
            opt(&l.certificate_ref),
            opt(&l.insured),
            opt(&l.insured_id),
            opt(&l.vehicle_registration),
            opt(&l.vehicle),
            opt(&l.cover_start.map(|t| t.to_rfc3339())),
            opt(&l.cover_end.map(|t| t.to_rfc3339())),
            l.currency.clone(),
            l.gross_premium.to_string(),
            l.commission.to_string(),
            opt(&l.ipt_rate_bp),
            l.ipt.to_string(),
            l.net_premium_due.to_string(),
            opt(&l.ledger_transaction_id),
        ],
    );
}

/// The bordereau's `TOTAL` rows, one per currency.
pub fn bordereau_csv_totals(out: &mut String, b: &Bordereau) {
    for t in &b.totals {
        let mut f = vec![String::new(); 17];
        f[0] = b.month.clone();
        f[2] = "TOTAL".into();
        f[10] = t.currency.clone();
        f[11] = t.gross_premium.to_string();
        f[12] = t.commission.to_string();
        f[14] = t.ipt.to_string();
        f[15] = t.net_premium_due.to_string();
        row(out, &f);
    }
}

/// The trial balance.
pub fn trial_balance_csv(tb: &TrialBalance) -> String {
    let mut out = String::new();
    row(
        &mut out,
        &[
            "at",
            "account_kind",
            "currency",
            "debit",
            "credit",
            "balance",
        ]
        .map(String::from),
    );
    for l in &tb.lines {
        row(
            &mut out,
            &[
                tb.at.to_string(),
                l.account_kind.clone(),
                l.currency.clone(),
                l.debit.to_string(),
                l.credit.to_string(),
                l.balance.to_string(),
            ],
        );
    }
    out
}

/// IPT per month.
pub fn ipt_csv(months: &[IptMonth]) -> String {
    let mut out = String::new();
    row(
        &mut out,
        &[
            "month",
            "currency",
            "ipt_charged",
            "ipt_refunded",
            "ipt_payable",
        ]
        .map(String::from),
    );
    for m in months {
        row(
            &mut out,
            &[
                m.month.clone(),
                m.currency.clone(),
                m.charged.to_string(),
                m.refunded.to_string(),
                m.payable.to_string(),
            ],
        );
    }
    out
}

/// A reconciliation: the summary rows, then the items.
pub fn reconciliation_csv(summary: Option<&ReconSummary>, items: &[ReconItem]) -> String {
    let mut out = String::new();
    row(
        &mut out,
        &[
            "status",
            "stripe_id",
            "stripe_type",
            "ledger_transaction_id",
            "ledger_kind",
            "currency",
            "stripe_amount",
            "ledger_amount",
            "stripe_fee",
            "ledger_fee",
            "detail",
        ]
        .map(String::from),
    );
    if let Some(s) = summary {
        for t in &s.statuses {
            row(
                &mut out,
                &[
                    format!("TOTAL {}", t.status),
                    String::new(),
                    String::new(),
                    String::new(),
                    t.count.to_string(),
                    t.currency.clone(),
                    t.stripe_amount.to_string(),
                    t.ledger_amount.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            );
        }
    }
    for i in items {
        row(
            &mut out,
            &[
                i.status.clone(),
                opt(&i.stripe_id),
                opt(&i.stripe_type),
                opt(&i.ledger_transaction_id),
                opt(&i.ledger_kind),
                i.currency.clone(),
                opt(&i.stripe_amount),
                opt(&i.ledger_amount),
                opt(&i.stripe_fee),
                opt(&i.ledger_fee),
                opt(&i.detail),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(field("-120"), "-120");
    }
}
