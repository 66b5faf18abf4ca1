//! `staffSearch`: one box for the back office that finds drivers (by name, phone, email, vehicle
//! registration or id), cover sessions (by certificate number), payments (by Stripe
//! PaymentIntent id) and partners (by name).
//!
//! What the text looks like decides which lookups run, so each is one indexed read: a phone
//! number is normalised to E.164 and matched exactly (the unique index on `drivers.phone`); an
//! email is matched by prefix (`drivers_email_prefix_idx`); a registration exactly
//! (`vehicles_registration_idx`); names by substring through the trigram index
//! (`drivers_name_trgm_idx`); a certificate number and a PaymentIntent id through their unique
//! constraints. Read-only, across the apps' tables, for people; never a source of truth.

use crate::accounts::conn;
use crate::errors::{InternalExt, coded};
use crate::guard;
use crate::relay::to_global_id;
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// What a search hit is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchHitKind {
    /// A driver.
    Driver,
    /// A cover session (found by its certificate number).
    CoverSession,
    /// A payment (found by its Stripe PaymentIntent id).
    Payment,
    /// A partner platform.
    Partner,
}

/// One thing the search found.
#[derive(SimpleObject, Debug, Clone)]
pub struct SearchHit {
    /// What it is.
    pub kind: SearchHitKind,
    /// The found object's global id, as `objectId`. A hit is not that object: this becomes the
    /// hit's own id once the back office reads `objectId` (a cache keyed by `id` would take the
    /// hit for the driver, session, payment or partner it points to).
    #[graphql(deprecation = "Use `objectId`; `id` will become the hit's own id.")]
    pub id: ID,
    /// The found object's global id (`node(id:)` opens it).
    pub object_id: ID,
    /// The line to show first (a name, a certificate number, an amount).
    pub title: String,
    /// More to tell hits apart (phone, email, dates).
    pub detail: String,
    /// The driver it belongs to, for sessions and payments (and drivers themselves).
    pub driver_id: Option<ID>,
}

/// One hit, before it becomes a [`SearchHit`].
#[derive(QueryableByName)]
pub struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    detail: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    driver_id: Option<Uuid>,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text as a vehicle registration (`AB12 CDE` → `AB12CDE`), when it can be one.
fn as_registration(q: &str) -> Option<String> {
    let r: String = q
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    let ok = (2..=8).contains(&r.len())
        && r.chars().all(|c| c.is_ascii_alphanumeric())
        && r.chars().any(|c| c.is_ascii_digit());
    ok.then_some(r)
}

/// The text as a certificate number (`sc-7k4q-9xm2` → `SC-7K4Q-9XM2`).
fn as_certificate(q: &str) -> Option<String> {
    let c = q.trim().to_uppercase();
    let ok = c.len() == 12
        && c.starts_with("SC-")
        && c.as_bytes()[7] == b'-'
        && c[3..7]
            .chars()
            .chain(c[8..].chars())
            .all(|ch| ch.is_ascii_alphanumeric());
    ok.then_some(c)
}

const DRIVER_COLUMNS: &str = "d.id, coalesce(d.name, '(no name yet)') AS title, \
     concat_ws(' · ', d.phone, d.email) AS detail, d.id AS driver_id";

async fn rows(
    conn: &mut AsyncPgConnection,
    sql: &str,
    arg: &str,
    limit: i64,
) -> Result<Vec<Row>, diesel::result::Error> {
    diesel::sql_query(sql)
        .bind::<Text, _>(arg)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await
}

/// Runs the lookups the text calls for; at most `limit` hits of each kind.
pub async fn search(
    conn: &mut AsyncPgConnection,
    q: &str,
    limit: i64,
) -> Result<Vec<(SearchHitKind, Row)>, diesel::result::Error> {
    let q = q.trim();
    let mut hits = Vec::new();
    let mut push = |kind: SearchHitKind, found: Vec<Row>| {
        for r in found {
            if !hits
                .iter()
                .any(|(k, h): &(SearchHitKind, Row)| *k == kind && h.id == r.id)
            {
                hits.push((kind, r));
            }
        }
    };
    if let Some(hex) = q.strip_prefix("drv_")
        && let Ok(id) = Uuid::parse_str(hex)
    {
        let found = diesel::sql_query(format!(
            "SELECT {DRIVER_COLUMNS} FROM drivers d WHERE d.id = $1 AND d.deleted_at IS NULL"
        ))
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        push(SearchHitKind::Driver, found);
    }
    let digits = q.chars().filter(char::is_ascii_digit).count();
    if digits >= 7
        && q.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c))
        && let Ok(phone) = accounts::Phone::parse(q)
    {
        let sql = format!(
            "SELECT {DRIVER_COLUMNS} FROM drivers d \
              WHERE d.phone = $1 AND d.deleted_at IS NULL LIMIT $2"
        );
        push(
            SearchHitKind::Driver,
            rows(conn, &sql, phone.as_str(), limit).await?,
        );
    }
    if q.contains('@') {
        let sql = format!(
            "SELECT {DRIVER_COLUMNS} FROM drivers d \
              WHERE d.email LIKE $1 AND d.deleted_at IS NULL ORDER BY d.email LIMIT $2"
        );
        let pattern = format!("{}%", like_escape(&q.to_lowercase()));
        push(
            SearchHitKind::Driver,
            rows(conn, &sql, &pattern, limit).await?,
        );
    }
    if let Some(certificate) = as_certificate(q) {
        let found = rows(
            conn,
            "SELECT s.id, s.certificate_number AS title, \
                    concat_ws(' · ', coalesce(d.name, d.phone), \
                              to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), s.status) AS detail, \
                    s.driver_id \
               FROM cover_sessions s JOIN drivers d ON d.id = s.driver_id \
              WHERE s.certificate_number = $1 LIMIT $2",
            &certificate,
            limit,
        )
        .await?;
        push(SearchHitKind::CoverSession, found);
    }
    if q.starts_with("pi_") && q.len() <= 100 {
        let found = rows(
            conn,
            "SELECT t.id, concat(t.payment_intent_id, ' · ', t.currency, ' ', \
                    to_char(t.amount_minor / 100.0, 'FM999999990.00')) AS title, \
                    concat_ws(' · ', coalesce(d.name, d.phone), t.status, \
                              to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')) AS detail, \
                    t.driver_id \
               FROM top_ups t JOIN drivers d ON d.id = t.driver_id \
              WHERE t.payment_intent_id = $1 LIMIT $2",
            q,
            limit,
        )
        .await?;
        push(SearchHitKind::Payment, found);
    }
    if let Some(registration) = as_registration(q) {
        let sql = format!(
            "SELECT {DRIVER_COLUMNS} FROM vehicles v JOIN drivers d ON d.id = v.driver_id \
              WHERE v.registration = $1 AND v.removed_at IS NULL AND d.deleted_at IS NULL LIMIT $2"
        );
        push(
            SearchHitKind::Driver,
            rows(conn, &sql, &registration, limit).await?,
        );
    }
    let letters = q.chars().filter(|c| c.is_alphabetic()).count();
    // Unordered: a common surname matches thousands, and sorting them all to show ten would
    // read every match; the first ten the index gives are as good, and typing more narrows it.
    if letters >= 3 && !q.contains('@') {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        let sql = format!(
            "SELECT {DRIVER_COLUMNS} FROM drivers d \
              WHERE lower(d.name) LIKE $1 AND d.deleted_at IS NULL LIMIT $2"
        );
        push(
            SearchHitKind::Driver,
            rows(conn, &sql, &pattern, limit).await?,
        );
        let found = rows(
            conn,
            "SELECT p.id, p.name AS title, p.status AS detail, NULL::uuid AS driver_id \
               FROM partners p WHERE lower(p.name) LIKE $1 ORDER BY p.name LIMIT $2",
            &pattern,
            limit,
        )
        .await?;
        push(SearchHitKind::Partner, found);
    }
    Ok(hits)
}

/// The staff search query.
#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Finds drivers (name, phone, email, registration, `drv_…` id), cover sessions
    /// (certificate number), payments (Stripe PaymentIntent id) and partners (name) for the back
    /// office (ops, finance, admin). At most `first` hits of each kind; `BAD_USER_INPUT` for
    /// text shorter than 2 or longer than 100 characters.
    async fn staff_search(
        &self,
        ctx: &Context<'_>,
        query: String,
        #[graphql(default = 10, validator(minimum = 1, maximum = 50))] first: i32,
    ) -> async_graphql::Result<Vec<SearchHit>> {
        guard::require_any_staff(ctx)?;
        let len = query.trim().chars().count();
        if !(2..=100).contains(&len) {
            return Err(coded("BAD_USER_INPUT", "Search for 2 to 100 characters."));
        }
        let mut conn = conn(ctx).await?;
        let hits = search(&mut conn, &query, i64::from(first))
            .await
            .internal(ctx)?;
        Ok(hits
            .into_iter()
            .map(|(kind, r)| {
                let id = match kind {
                    SearchHitKind::Driver => to_global_id("Driver", &accounts::DriverId(r.id)),
                    SearchHitKind::CoverSession => {
                        to_global_id("CoverSession", &cover::CoverSessionId(r.id))
                    }
                    SearchHitKind::Payment => to_global_id("Payment", &payments::TopUpId(r.id)),
                    SearchHitKind::Partner => to_global_id("Partner", &accounts::PartnerId(r.id)),
                };
                SearchHit {
                    kind,
                    id: id.clone(),
                    object_id: id,
                    title: r.title,
                    detail: r.detail,
                    driver_id: r
                        .driver_id
                        .map(|d| to_global_id("Driver", &accounts::DriverId(d))),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_decides_the_lookups() {
        assert_eq!(as_registration("ab12 cde"), Some("AB12CDE".into()));
        assert_eq!(as_registration("Lovelace"), None, "no digit");
        assert_eq!(as_registration("AB-12"), None);
        assert_eq!(as_certificate("sc-7k4q-9xm2"), Some("SC-7K4Q-9XM2".into()));
        assert_eq!(as_certificate("SC-7K4Q9XM2"), None);
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
    }
}
