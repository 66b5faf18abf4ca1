//! The append-only audit log (the database refuses updates and deletes of its rows).

use crate::schema::audit_log;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorType {
    /// A driver, through the app.
    Driver,
    /// A partner platform, through its API key.
    Partner,
    /// An ops, finance or admin user.
    Staff,
    /// ShiftCover itself (a job, a cron tick).
    System,
}

impl ActorType {
    fn as_str(self) -> &'static str {
        match self {
            ActorType::Driver => "driver",
            ActorType::Partner => "partner",
            ActorType::Staff => "staff",
            ActorType::System => "system",
        }
    }
}

/// One audit entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who acted.
    pub actor_type: ActorType,
    /// Their id, as text (`drv_…`, `stf_…`), when there is one.
    pub actor_id: Option<String>,
    /// What they did, e.g. `driver.signed_in`.
    pub action: &'a str,
    /// The kind of thing acted on, e.g. `driver`.
    pub subject_type: &'a str,
    /// Its id, as text.
    pub subject_id: String,
    /// Why, when a person gave a reason.
    pub reason: Option<&'a str>,
    /// Anything else worth keeping.
    pub details: serde_json::Value,
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
#[diesel(treat_none_as_default_value = false)]
struct NewAuditRow<'a> {
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    subject_type: &'a str,
    subject_id: &'a str,
    reason: Option<&'a str>,
    details: &'a serde_json::Value,
}

/// Writes several audit entries in one statement (over arrays), with the caller's connection:
/// what [`record`] writes for each, for a caller that changes many things at once.
pub async fn record_all(
    conn: &mut AsyncPgConnection,
    entries: &[AuditEntry<'_>],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Jsonb, Nullable, Text};
    if entries.is_empty() {
        return Ok(());
    }
    fn column<'e, 'a, T>(
        entries: &'e [AuditEntry<'a>],
        f: impl Fn(&'e AuditEntry<'a>) -> T,
    ) -> Vec<T> {
        entries.iter().map(f).collect()
    }
    crate::sql::prepared(
        "INSERT INTO audit_log (actor_type, actor_id, action, subject_type, subject_id, reason, details)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::jsonb[])",
    )
    .bind::<Array<Text>, _>(column(entries, |e| e.actor_type.as_str()))
    .bind::<Array<Nullable<Text>>, _>(column(entries, |e| e.actor_id.as_deref()))
    .bind::<Array<Text>, _>(column(entries, |e| e.action))
    .bind::<Array<Text>, _>(column(entries, |e| e.subject_type))
    .bind::<Array<Text>, _>(column(entries, |e| e.subject_id.as_str()))
    .bind::<Array<Nullable<Text>>, _>(column(entries, |e| e.reason))
    .bind::<Array<Jsonb>, _>(column(entries, |e| &e.details))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Writes an audit entry with the caller's connection (so inside the caller's transaction).
pub async fn record(conn: &mut AsyncPgConnection, entry: &AuditEntry<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values(NewAuditRow {
            actor_type: entry.actor_type.as_str(),
            actor_id: entry.actor_id.as_deref(),
            action: entry.action,
            subject_type: entry.subject_type,
            subject_id: &entry.subject_id,
            reason: entry.reason,
            details: &entry.details,
        })
        .execute(conn)
        .await
        .map(|_| ())
}
