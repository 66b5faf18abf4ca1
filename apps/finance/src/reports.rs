//! Reports for finance: trial balance, IPT payable per month, the monthly premium bordereau.
//!
//! Totals come from the daily rollups ([`crate::rollups::ledger_totals`]), so they cost the same
//! at fifty million postings as at fifty; bordereau lines are read from the ledger's month of
//! `session_charge` transactions and their reversals, joined to the cover session (certificate,
//! cover start and end), the insured driver and the vehicle.
//!
//! Ledger signs: debit positive. Premium accounts (insurer payable, commission income, IPT
//! payable) are credit-normal, so a charge credits them and a refund of a charge debits them.

use crate::error::FinanceError;
use crate::period::{Month, day_start};
use crate::rollups::{KindTotals, ledger_totals};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;

/// One line of a trial balance: an account kind (driver wallets summed) in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialBalanceLine {
    /// The account kind.
    pub account_kind: String,
    /// The currency.
    pub currency: String,
    /// Sum of debits.
    pub debit: i64,
    /// Sum of credits.
    pub credit: i64,
    /// Debits minus credits (positive: a debit balance).
    pub balance: i64,
}

/// A trial balance: every account kind's debits and credits up to the end of a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialBalance {
    /// The day, inclusive (postings before the next midnight UTC).
    pub at: NaiveDate,
    /// Lines by account kind and currency.
    pub lines: Vec<TrialBalanceLine>,
}

impl TrialBalance {
    /// Whether debits equal credits in every currency (they always should).
    pub fn balances(&self) -> bool {
        let mut by_currency = std::collections::BTreeMap::<&str, i128>::new();
        for l in &self.lines {
            *by_currency.entry(&l.currency).or_default() += i128::from(l.balance);
        }
        by_currency.values().all(|v| *v == 0)
    }
}

fn end_of(at: NaiveDate) -> DateTime<Utc> {
    day_start(at) + Duration::days(1)
}

/// The trial balance at the end of `at` (UTC). Errors: `PERIOD_IN_FUTURE` after today.
pub async fn trial_balance(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    at: NaiveDate,
) -> Result<TrialBalance, FinanceError> {
    crate::period::check_day_started("at", at, clock.now())?;
    let totals = ledger_totals(conn, DateTime::UNIX_EPOCH, end_of(at)).await?;
    let mut lines: Vec<TrialBalanceLine> = Vec::new();
    for t in totals {
        match lines
            .iter_mut()
            .find(|l| l.account_kind == t.account_kind && l.currency == t.currency)
        {
            Some(l) => {
                l.debit += t.debit;
                l.credit += t.credit;
                l.balance = l.debit - l.credit;
            }
            None => lines.push(TrialBalanceLine {
                balance: t.debit - t.credit,
                account_kind: t.account_kind,
                currency: t.currency,
                debit: t.debit,
                credit: t.credit,
            }),
        }
    }
    lines.sort_by(|a, b| (&a.currency, &a.account_kind).cmp(&(&b.currency, &b.account_kind)));
    Ok(TrialBalance { at, lines })
}

/// IPT of one month in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IptMonth {
    /// The month.
    pub month: String,
    /// The currency.
    pub currency: String,
    /// IPT on premiums charged (credits to IPT payable by session charges).
    pub charged: i64,
    /// IPT given back by refunds of charges (debits by reversals).
    pub refunded: i64,
    /// Payable to HMRC for the month: charged − refunded.
    pub payable: i64,
}

/// IPT payable per month from `from` to `to` inclusive; months with no premium are left out.
/// Errors: `INVALID_PERIOD` (to before from, more than 120 months), `PERIOD_IN_FUTURE`.
pub async fn ipt_by_month(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    from: Month,
    to: Month,
) -> Result<Vec<IptMonth>, FinanceError> {
    if to < from {
        return Err(FinanceError::InvalidPeriod {
            field: "to",
            reason: "the last month is before the first".into(),
        });
    }
    from.check_started("from", clock.now())?;
    to.check_started("to", clock.now())?;
    let mut out = Vec::new();
    let mut m = from;
    let mut n = 0;
    while m <= to {
        n += 1;
        if n > 120 {
            return Err(FinanceError::InvalidPeriod {
                field: "to",
                reason: "at most 120 months at once".into(),
            });
        }
        let (start, end) = m.bounds();
        let totals = ledger_totals(conn, start, end).await?;
        let mut by_currency = std::collections::BTreeMap::<String, (i64, i64)>::new();
        for t in totals.iter().filter(|t| t.account_kind == "ipt_payable") {
            let e = by_currency.entry(t.currency.clone()).or_default();
            match t.tx_kind.as_str() {
                "session_charge" => e.0 += t.credit - t.debit,
                "reversal" => e.1 += t.debit - t.credit,
                _ => {}
            }
        }
        for (currency, (charged, refunded)) in by_currency {
            out.push(IptMonth {
                month: m.to_string(),
                currency,
                charged,
                refunded,
                payable: charged - refunded,
            });
        }
        m = Month::of(m.next_first_day());
    }
    Ok(out)
}

/// One bordereau line: a charged session, a refund of one, or a session priced nothing (its
/// certificate was issued all the same, so the insurer sees it).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct BordereauLine {
    /// When the ledger booked it (for `no_premium`, when the session's charge was settled).
    #[diesel(sql_type = Timestamptz)]
    pub booked_at: DateTime<Utc>,
    /// `charge`, `refund`, or `no_premium` (a session priced £0, e.g. after the day's cap, or
    /// inside a working period's minimum: no money moved, every amount is zero).
    #[diesel(sql_type = Text)]
    pub transaction_type: String,
    /// The certificate of the session.
    #[diesel(sql_type = Nullable<Text>)]
    pub certificate_ref: Option<String>,
    /// The insured's name (empty when erased).
    #[diesel(sql_type = Nullable<Text>)]
    pub insured: Option<String>,
    /// The insured's driver id (`drv_…`).
    #[diesel(sql_type = Nullable<Text>)]
    pub insured_id: Option<String>,
    /// Vehicle registration (none for pedal cycles).
    #[diesel(sql_type = Nullable<Text>)]
    pub vehicle_registration: Option<String>,
    /// Vehicle type, make and model.
    #[diesel(sql_type = Nullable<Text>)]
    pub vehicle: Option<String>,
    /// Cover start.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub cover_start: Option<DateTime<Utc>>,
    /// Cover end.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub cover_end: Option<DateTime<Utc>>,
    /// The currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Gross premium (net + commission + IPT); negative for a refund.
    #[diesel(sql_type = BigInt)]
    pub gross_premium: i64,
    /// Commission.
    #[diesel(sql_type = BigInt)]
    pub commission: i64,
    /// IPT rate in basis points (of the premium including IPT's basis, e.g. 1200 = 12%).
    #[diesel(sql_type = Nullable<Integer>)]
    pub ipt_rate_bp: Option<i32>,
    /// IPT.
    #[diesel(sql_type = BigInt)]
    pub ipt: i64,
    /// Net premium due to the insurer.
    #[diesel(sql_type = BigInt)]
    pub net_premium_due: i64,
    /// The ledger transaction (for tracing a line to the books); none for `no_premium`.
    #[diesel(sql_type = Nullable<Text>)]
    pub ledger_transaction_id: Option<String>,
}

/// Totals of a bordereau in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BordereauTotals {
    /// The currency.
    pub currency: String,
    /// Charge lines.
    pub charges: i64,
    /// Refund lines.
    pub refunds: i64,
    /// Sum of gross premium.
    pub gross_premium: i64,
    /// Sum of commission.
    pub commission: i64,
    /// Sum of IPT.
    pub ipt: i64,
    /// Sum of net premium due.
    pub net_premium_due: i64,
}

/// A month's premium bordereau.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bordereau {
    /// `YYYY-MM`.
    pub month: String,
    /// Lines in booking order.
    pub lines: Vec<BordereauLine>,
    /// Totals per currency.
    pub totals: Vec<BordereauTotals>,
}

const LINES_SQL: &str = r#"
WITH acc AS (
    SELECT id, kind FROM ledger_accounts WHERE kind IN ('insurer_payable', 'commission_income', 'ipt_payable')
),
tx AS (
    SELECT t.id, t.kind, t.created_at, t.currency,
           CASE WHEN t.kind = 'session_charge' THEN t.cause_id ELSE o.cause_id END AS session_ref
      FROM ledger_transactions t
      LEFT JOIN ledger_transactions o ON o.id = t.reverses_id
     WHERE t.created_at >= $1 AND t.created_at < $2
       AND (t.kind = 'session_charge' OR (t.kind = 'reversal' AND o.kind = 'session_charge'))
),
amt AS (
    SELECT tx.id,
           coalesce(-sum(p.amount) FILTER (WHERE acc.kind = 'insurer_payable'), 0) AS net,
           coalesce(-sum(p.amount) FILTER (WHERE acc.kind = 'commission_income'), 0) AS commission,
           coalesce(-sum(p.amount) FILTER (WHERE acc.kind = 'ipt_payable'), 0) AS ipt
      FROM tx
      JOIN ledger_postings p ON p.transaction_id = tx.id
      JOIN acc ON acc.id = p.account_id
     GROUP BY tx.id
),
line AS (
    SELECT tx.created_at AS booked_at,
           CASE WHEN tx.kind = 'session_charge' THEN 'charge' ELSE 'refund' END AS transaction_type,
           CASE WHEN tx.session_ref ~ '^cvs_[0-9a-f]{32}$'
                THEN substr(tx.session_ref, 5)::uuid END AS session_id,
           tx.currency,
           (amt.net + amt.commission + amt.ipt)::bigint AS gross_premium,
           amt.commission::bigint AS commission,
           amt.ipt::bigint AS ipt,
           amt.net::bigint AS net_premium_due,
           tx.id::text AS ledger_transaction_id
      FROM tx
      JOIN amt ON amt.id = tx.id
    UNION ALL
    SELECT s.charged_at, 'no_premium', s.id, s.currency, 0, 0, 0, 0, NULL
      FROM cover_sessions s
     WHERE s.total_minor = 0 AND s.charged_at >= $1 AND s.charged_at < $2
)
SELECT line.booked_at,
       line.transaction_type,
       s.certificate_number AS certificate_ref,
       d.name AS insured,
       CASE WHEN d.id IS NULL THEN NULL ELSE 'drv_' || replace(d.id::text, '-', '') END AS insured_id,
       v.registration AS vehicle_registration,
       CASE WHEN v.id IS NULL THEN NULL
            ELSE concat_ws(' ', v.vehicle_type, v.make, v.model) END AS vehicle,
       s.started_at AS cover_start,
       s.ended_at AS cover_end,
       line.currency,
       line.gross_premium,
       line.commission,
       s.ipt_rate_bp,
       line.ipt,
       line.net_premium_due,
       line.ledger_transaction_id
  FROM line
  LEFT JOIN cover_sessions s ON s.id = line.session_id
  LEFT JOIN drivers d ON d.id = s.driver_id
  LEFT JOIN vehicles v ON v.id = s.vehicle_id
 ORDER BY line.booked_at, line.ledger_transaction_id NULLS LAST, s.certificate_number
"#;

/// The premium bordereau of `month`: one line per charged session or refund of one, and one per
/// session priced nothing, with totals (a `no_premium` line counts as neither a charge nor a
/// refund and adds nothing, so the totals still tie to the ledger's premium accounts).
/// Errors: `PERIOD_IN_FUTURE` for a month not begun. An empty month is an empty bordereau.
pub async fn bordereau(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    month: Month,
) -> Result<Bordereau, FinanceError> {
    month.check_started("month", clock.now())?;
    let (start, end) = month.bounds();
    let lines: Vec<BordereauLine> = diesel::sql_query(LINES_SQL)
        .bind::<Timestamptz, _>(start)
        .bind::<Timestamptz, _>(end)
        .load(conn)
        .await?;
    let mut totals: Vec<BordereauTotals> = Vec::new();
    for l in &lines {
        let t = match totals.iter_mut().position(|t| t.currency == l.currency) {
            Some(i) => &mut totals[i],
            None => {
                totals.push(BordereauTotals {
                    currency: l.currency.clone(),
                    ..BordereauTotals::default()
                });
                let last = totals.len() - 1;
                &mut totals[last]
            }
        };
        match l.transaction_type.as_str() {
            "charge" => t.charges += 1,
            "refund" => t.refunds += 1,
            _ => {}
        }
        t.gross_premium += l.gross_premium;
        t.commission += l.commission;
        t.ipt += l.ipt;
        t.net_premium_due += l.net_premium_due;
    }
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(Bordereau {
        month: month.to_string(),
        lines,
        totals,
    })
}

/// Bordereau totals of `month` from the rollups alone: premium, commission and IPT movements of
/// session charges and their reversals. Equal to the totals of [`bordereau`]'s lines.
pub async fn bordereau_totals(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    month: Month,
) -> Result<Vec<BordereauTotals>, FinanceError> {
    month.check_started("month", clock.now())?;
    let (start, end) = month.bounds();
    let totals = ledger_totals(conn, start, end).await?;
    Ok(premium_totals(&totals))
}

/// Folds per-kind ledger totals into bordereau totals.
pub fn premium_totals(totals: &[KindTotals]) -> Vec<BordereauTotals> {
    let mut out: Vec<BordereauTotals> = Vec::new();
    for t in totals {
        let sign = match t.tx_kind.as_str() {
            "session_charge" | "reversal" => 1,
            _ => continue,
        };
        let movement = sign * (t.credit - t.debit);
        let entry = match out.iter().position(|o| o.currency == t.currency) {
            Some(i) => &mut out[i],
            None => {
                out.push(BordereauTotals {
                    currency: t.currency.clone(),
                    ..BordereauTotals::default()
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        match t.account_kind.as_str() {
            "insurer_payable" => {
                entry.net_premium_due += movement;
                if t.tx_kind == "session_charge" {
                    entry.charges += t.postings;
                } else {
                    entry.refunds += t.postings;
                }
            }
            "commission_income" => entry.commission += movement,
            "ipt_payable" => entry.ipt += movement,
            _ => continue,
        }
        entry.gross_premium += if matches!(
            t.account_kind.as_str(),
            "insurer_payable" | "commission_income" | "ipt_payable"
        ) {
            movement
        } else {
            0
        };
    }
    out.retain(|t| t.charges + t.refunds > 0 || t.gross_premium != 0);
    out.sort_by(|a, b| a.currency.cmp(&b.currency));
    out
}
