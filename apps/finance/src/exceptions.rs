//! The exceptions queue: every reconciliation item that did not match, once per item and kind
//! while open. Finance adds notes and resolves an exception with a reason; both are written to
//! the audit log in the same transaction.

use crate::error::FinanceError;
use crate::schema::{finance_exception_notes, finance_exceptions};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;
use shared::audit::{self, ActorType, AuditEntry};
use uuid::Uuid;

/// Longest note or resolution, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// One exception.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = finance_exceptions)]
pub struct ReconException {
    /// Id.
    pub id: Uuid,
    /// `stripe:<id>` or `ledger:<uuid>`.
    pub item_key: String,
    /// The day reconciled.
    pub day: NaiveDate,
    /// `amount_mismatch`, `missing_in_ledger`, `missing_at_stripe`, `duplicate`, `unknown_type`.
    pub kind: String,
    /// The Stripe balance transaction.
    pub stripe_id: Option<String>,
    /// The ledger transaction.
    pub ledger_transaction_id: Option<Uuid>,
    /// The currency.
    pub currency: String,
    /// Stripe's gross amount.
    pub stripe_amount: Option<i64>,
    /// The ledger's gross amount.
    pub ledger_amount: Option<i64>,
    /// What differs.
    pub detail: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    /// The run that found it first.
    pub first_run_id: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it (`stf_…`).
    pub resolved_by: Option<String>,
    /// Why it is resolved.
    pub resolution: Option<String>,
}

/// A note on an exception.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = finance_exception_notes)]
pub struct ExceptionNote {
    /// Id.
    pub id: i64,
    /// The exception.
    pub exception_id: Uuid,
    /// Who wrote it.
    pub author: String,
    /// The note.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

fn clean_text(field: &'static str, s: &str) -> Result<String, FinanceError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > MAX_TEXT_CHARS {
        return Err(FinanceError::InvalidText(field));
    }
    Ok(t.to_owned())
}

/// Exceptions with `status` (`open`, `resolved`, or any when `None`), oldest first, after the
/// keyset `after` (created_at, id), at most `limit` (1 to 100) plus one to tell if more follow.
pub async fn list_exceptions(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ReconException>, FinanceError> {
    if !(1..=100).contains(&limit) {
        return Err(FinanceError::InvalidPage("first"));
    }
    let mut q = finance_exceptions::table
        .select(ReconException::as_select())
        .order((finance_exceptions::created_at, finance_exceptions::id))
        .limit(limit + 1)
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(finance_exceptions::status.eq(s.to_owned()));
    }
    if let Some((at, id)) = after {
        q = q.filter(
            finance_exceptions::created_at
                .gt(at)
                .or(finance_exceptions::created_at
                    .eq(at)
                    .and(finance_exceptions::id.gt(id))),
        );
    }
    Ok(q.load(conn).await?)
}

/// One exception. Errors: `NOT_FOUND`.
pub async fn get_exception(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<ReconException, FinanceError> {
    finance_exceptions::table
        .find(id)
        .select(ReconException::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(FinanceError::NotFound("id"))
}

/// The notes of an exception, oldest first.
pub async fn notes_of(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<ExceptionNote>, FinanceError> {
    Ok(finance_exception_notes::table
        .filter(finance_exception_notes::exception_id.eq(id))
        .order(finance_exception_notes::id)
        .select(ExceptionNote::as_select())
        .load(conn)
        .await?)
}

/// Adds a note by `staff_id` (`stf_…`). Errors: `NOT_FOUND`, `INVALID_TEXT` (field `body`).
pub async fn add_note(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: &str,
    id: Uuid,
    body: &str,
) -> Result<ExceptionNote, FinanceError> {
    let body = clean_text("body", body)?;
    conn.transaction::<_, FinanceError, _>(async |conn| {
        get_exception(conn, id).await?;
        let note: ExceptionNote = diesel::insert_into(finance_exception_notes::table)
            .values((
                finance_exception_notes::exception_id.eq(id),
                finance_exception_notes::author.eq(staff_id),
                finance_exception_notes::body.eq(&body),
                finance_exception_notes::created_at.eq(clock.now()),
            ))
            .returning(ExceptionNote::as_returning())
            .get_result(conn)
            .await?;
        audit::record(
            conn,
            &AuditEntry {
                actor_type: ActorType::Staff,
                actor_id: Some(staff_id.to_owned()),
                action: "finance.exception_noted",
                subject_type: "finance_exception",
                subject_id: id.to_string(),
                reason: None,
                details: serde_json::json!({ "note_id": note.id }),
            },
        )
        .await?;
        Ok(note)
    })
    .await
}

/// Resolves an open exception with a reason. Errors: `NOT_FOUND`, `ALREADY_RESOLVED`,
/// `INVALID_TEXT` (field `reason`).
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: &str,
    id: Uuid,
    reason: &str,
) -> Result<ReconException, FinanceError> {
    let reason = clean_text("reason", reason)?;
    conn.transaction::<_, FinanceError, _>(async |conn| {
        let current = get_exception(conn, id).await?;
        let updated: Option<ReconException> = diesel::update(
            finance_exceptions::table
                .find(id)
                .filter(finance_exceptions::status.eq("open")),
        )
        .set((
            finance_exceptions::status.eq("resolved"),
            finance_exceptions::resolved_at.eq(Some(clock.now())),
            finance_exceptions::resolved_by.eq(Some(staff_id)),
            finance_exceptions::resolution.eq(Some(&reason)),
        ))
        .returning(ReconException::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        let updated = updated.ok_or(FinanceError::AlreadyResolved)?;
        audit::record(
            conn,
            &AuditEntry {
                actor_type: ActorType::Staff,
                actor_id: Some(staff_id.to_owned()),
                action: "finance.exception_resolved",
                subject_type: "finance_exception",
                subject_id: id.to_string(),
                reason: Some(&reason),
                details: serde_json::json!({
                    "kind": current.kind,
                    "item": current.item_key,
                    "day": current.day,
                }),
            },
        )
        .await?;
        Ok(updated)
    })
    .await
}
