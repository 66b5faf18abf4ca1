//! Helpers shared by the tests.

use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ledger::{
    AccountRef, Cause, LedgerError, NewTransaction, Posted, SystemAccount, TransactionKind,
    session_charge_lines, top_up_lines,
};
use shared::{Currency, Money};

/// A wallet owner no other test uses.
pub fn new_owner() -> String {
    format!("drv_{}", uuid::Uuid::now_v7().simple())
}

/// A cause id no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// The code of an error, or "INTERNAL".
pub fn code(e: &LedgerError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}

pub fn gbp(account: SystemAccount) -> AccountRef {
    AccountRef::system(account, Currency::Gbp)
}

pub fn wallet(owner: &str) -> AccountRef {
    AccountRef::driver_wallet(owner, Currency::Gbp)
}

/// A top-up transaction (not yet posted).
pub fn top_up_tx(owner: &str, pence: i64, fee: i64, cause_id: &str) -> NewTransaction {
    NewTransaction {
        kind: TransactionKind::TopUp,
        cause: Cause::new("top_up", cause_id),
        currency: Currency::Gbp,
        description: "Card top-up".into(),
        lines: top_up_lines(owner, Money::gbp(pence), Money::gbp(fee)).unwrap(),
        metadata: serde_json::json!({ "payment_intent": "pi_test" }),
    }
}

/// Posts a top-up with a fresh cause.
pub async fn top_up(conn: &mut AsyncPgConnection, owner: &str, pence: i64) -> Posted {
    ledger::post(conn, top_up_tx(owner, pence, 0, &unique("top")))
        .await
        .unwrap()
}

/// A session charge transaction (not yet posted).
pub fn charge_tx(
    owner: &str,
    total: i64,
    net: i64,
    commission: i64,
    ipt: i64,
    cause_id: &str,
) -> NewTransaction {
    NewTransaction {
        kind: TransactionKind::SessionCharge,
        cause: Cause::new("cover_session", cause_id),
        currency: Currency::Gbp,
        description: "Cover session".into(),
        lines: session_charge_lines(
            owner,
            Money::gbp(total),
            Money::gbp(net),
            Money::gbp(commission),
            Money::gbp(ipt),
        )
        .unwrap(),
        metadata: serde_json::Value::Null,
    }
}

/// Posts a session charge with a fresh cause.
pub async fn charge(
    conn: &mut AsyncPgConnection,
    owner: &str,
    total: i64,
    net: i64,
    commission: i64,
    ipt: i64,
) -> Posted {
    ledger::post(
        conn,
        charge_tx(owner, total, net, commission, ipt, &unique("ses")),
    )
    .await
    .unwrap()
}

/// The debit-minus-credit balance of an account, in pence.
pub async fn bal(conn: &mut AsyncPgConnection, account: &AccountRef) -> i64 {
    ledger::balance(conn, account).await.unwrap().minor
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Runs a `SELECT count(*) AS n …`-style query.
pub async fn count(conn: &mut AsyncPgConnection, query: &str) -> i64 {
    diesel::sql_query(query)
        .get_result::<N>(conn)
        .await
        .unwrap()
        .n
}
