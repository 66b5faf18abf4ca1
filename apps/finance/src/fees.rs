//! Stripe's fees, booked as Stripe reports them.
//!
//! A top-up is booked when its payment succeeds, before Stripe's balance transaction (and so its
//! fee) exists; the ledger books it with a zero fee (see `ledger::top_up_lines`). Once the day's
//! balance transactions are imported, [`book_learned_fees`] posts one `fee` ledger transaction
//! per card payment whose fee the ledger does not hold yet: debit `stripe_fees`, credit
//! `stripe_clearing`, with the top-up's cause, so reconciliation finds it beside the top-up.
//!
//! Only when everything else agrees: the payment's ledger transaction exists and its gross equals
//! Stripe's amount. A payment whose amount differs is a real discrepancy; booking its fee would
//! hide half of it, so it is left for the exceptions queue. The ledger's unique
//! `(kind, cause_type, cause_id)` makes a second booking impossible: running this twice, or in
//! two processes at once, books each fee once.
//!
//! This is the one place finance writes the ledger; the posting goes through `ledger::post`
//! like every other money movement.

use crate::error::FinanceError;
use crate::period::day_bounds;
use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::{Currency, Money};

const FEES_DUE_SQL: &str = r#"
WITH sys AS (
    SELECT id, kind FROM ledger_accounts WHERE kind IN ('stripe_clearing', 'stripe_fees')
)
SELECT b.id AS stripe_id, b.currency, b.match_cause_type AS cause_type,
       b.match_cause_id AS cause_id, (b.fee - coalesce(g.fees, 0))::bigint AS due
  FROM finance_stripe_balance_transactions b
  JOIN ledger_transactions t
    ON t.kind = 'top_up' AND t.cause_type = b.match_cause_type AND t.cause_id = b.match_cause_id
  LEFT JOIN LATERAL (
        SELECT sum(p.amount) FILTER (WHERE sys.kind = 'stripe_clearing') AS clearing,
               sum(p.amount) FILTER (WHERE sys.kind = 'stripe_fees') AS fees
          FROM ledger_postings p JOIN sys ON sys.id = p.account_id
         WHERE p.transaction_id = t.id) g ON true
 WHERE b.created >= $1 AND b.created < $2
   AND b.match_kind = 'top_up' AND b.fee > 0
   AND coalesce(g.fees, 0) < b.fee
   AND coalesce(g.clearing, 0) + coalesce(g.fees, 0) = b.amount
   AND NOT EXISTS (SELECT 1 FROM ledger_transactions f
                    WHERE f.kind = 'fee' AND f.cause_type = b.match_cause_type
                      AND f.cause_id = b.match_cause_id)
 ORDER BY b.created, b.id
"#;

#[derive(QueryableByName)]
struct FeeDue {
    #[diesel(sql_type = Text)]
    stripe_id: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Text)]
    cause_type: String,
    #[diesel(sql_type = Text)]
    cause_id: String,
    #[diesel(sql_type = BigInt)]
    due: i64,
}

/// Books the fees Stripe reported on `day`'s card payments that the ledger does not hold yet.
/// Returns how many fees were booked (0 when run again).
pub async fn book_learned_fees(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
) -> Result<usize, FinanceError> {
    let (start, end) = day_bounds(day);
    let due: Vec<FeeDue> = diesel::sql_query(FEES_DUE_SQL)
        .bind::<Timestamptz, _>(start)
        .bind::<Timestamptz, _>(end)
        .load(conn)
        .await?;
    let mut booked = 0;
    for f in due {
        let Ok(currency) = f.currency.parse::<Currency>() else {
            tracing::warn!(stripe_id = %f.stripe_id, currency = %f.currency, "fee in a currency we do not book");
            continue;
        };
        let fee = Money {
            minor: f.due,
            currency,
        };
        let tx = ledger::NewTransaction {
            kind: ledger::TransactionKind::Fee,
            cause: ledger::Cause::new(f.cause_type.clone(), f.cause_id.clone()),
            currency,
            description: format!("Stripe fee on {}", f.stripe_id),
            lines: ledger::stripe_fee_lines(fee)
                .map_err(|e| FinanceError::Internal(anyhow::anyhow!("fee lines: {e}")))?,
            metadata: serde_json::json!({ "stripe_balance_transaction": f.stripe_id }),
        };
        // Its own savepoint: a fee another process booked first is skipped, not fatal.
        match ledger::post(conn, tx).await {
            Ok(_) => booked += 1,
            Err(ledger::LedgerError::AlreadyPosted(_)) => {}
            Err(e) => {
                return Err(FinanceError::Internal(anyhow::anyhow!(
                    "booking the Stripe fee of {}: {e}",
                    f.stripe_id
                )));
            }
        }
    }
    if booked > 0 {
        tracing::info!(%day, fees = booked, "Stripe fees booked");
    }
    Ok(booked)
}
