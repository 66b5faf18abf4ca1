//! Links between a partner's drivers and ShiftCover drivers.
//!
//! Invariants:
//! - a driver links by creating a short code in the app ([`create_link_code`]) that the partner
//!   redeems with its own id for the driver ([`link_driver`]); a code is random (8 characters of
//!   Crockford base 32, about 40 bits), stored only as a SHA-256, valid for
//!   [`LINK_CODE_TTL_MINUTES`] and redeemed once;
//! - a driver may be linked to several partners, to one partner once at a time; an external id
//!   names one linked driver per partner at a time (both enforced by unique partial indexes);
//! - test keys make and see test links only, live keys live links only;
//! - either side can unlink ([`unlink_by_driver`], [`unlink_by_partner`]); the row stays, so
//!   later events for it answer `NOT_LINKED`, and the partner gets a `driver.unlinked` webhook;
//! - links with no event for a long time are flagged ([`flag_stale_links`]), never dropped.

use crate::error::PartnersError;
use crate::ids::{LinkCodeId, LinkId};
use crate::schema::{partner_driver_links, partner_link_codes};
use crate::scope::PartnerScope;
use crate::support::{audit, clean_text, sha256};
use crate::webhooks::{EventType, enqueue_event};
use accounts::{Actor, DriverId, PartnerId};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::Rng;
use serde::Serialize;
use shared::Clock;
use shared::error::is_unique_violation;

/// How long a link code can be redeemed.
pub const LINK_CODE_TTL_MINUTES: i64 = 30;
/// Characters of a link code (shown as two groups of four).
pub const LINK_CODE_LEN: usize = 8;
/// Links with no event for this many days are flagged by [`flag_stale_links`] by default.
pub const DEFAULT_STALE_AFTER_DAYS: i64 = 30;
/// The most links one page of [`list_links_for_partner`] returns.
pub const MAX_PAGE_SIZE: i64 = 100;

/// Crockford's base 32: no I, L, O or U, so a code read out or typed is unambiguous.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_ATTEMPTS: usize = 5;
const EXTERNAL_UNIQUE: &str = "partner_driver_links_external_unique";
const DRIVER_UNIQUE: &str = "partner_driver_links_driver_unique";

/// Who unlinked a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlinkedBy {
    /// The driver, in the app.
    Driver,
    /// The partner, through its API.
    Partner,
    /// An ops user.
    Staff,
}

impl UnlinkedBy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnlinkedBy::Driver => "driver",
            UnlinkedBy::Partner => "partner",
            UnlinkedBy::Staff => "staff",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "driver" => Ok(UnlinkedBy::Driver),
            "partner" => Ok(UnlinkedBy::Partner),
            "staff" => Ok(UnlinkedBy::Staff),
            other => Err(anyhow::anyhow!("unknown unlinked_by {other:?}")),
        }
    }
}

/// A partner's driver linked to a ShiftCover driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The link.
    pub id: LinkId,
    /// The partner.
    pub partner_id: PartnerId,
    /// The ShiftCover driver.
    pub driver_id: DriverId,
    /// The partner's id for the driver.
    pub external_driver_id: String,
    /// Made with a test key (sandbox).
    pub test_mode: bool,
    /// When it was made.
    pub linked_at: DateTime<Utc>,
    /// When it was undone, if it was.
    pub unlinked_at: Option<DateTime<Utc>>,
    /// Who undid it.
    pub unlinked_by: Option<UnlinkedBy>,
    /// The latest event accepted for it (its time of occurrence).
    pub last_event_at: Option<DateTime<Utc>>,
    /// When it was flagged for having no event for a long time; cleared by the next event.
    pub flagged_stale_at: Option<DateTime<Utc>>,
}

impl Link {
    /// Whether the link is in force.
    pub fn is_linked(&self) -> bool {
        self.unlinked_at.is_none()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partner_driver_links)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct LinkRow {
    pub id: LinkId,
    pub partner_id: PartnerId,
    pub driver_id: DriverId,
    pub external_driver_id: String,
    pub test_mode: bool,
    pub linked_at: DateTime<Utc>,
    pub unlinked_at: Option<DateTime<Utc>>,
    pub unlinked_by: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub flagged_stale_at: Option<DateTime<Utc>>,
}

impl TryFrom<LinkRow> for Link {
    type Error = PartnersError;

    fn try_from(r: LinkRow) -> Result<Self, PartnersError> {
        Ok(Link {
            id: r.id,
            partner_id: r.partner_id,
            driver_id: r.driver_id,
            external_driver_id: r.external_driver_id,
            test_mode: r.test_mode,
            linked_at: r.linked_at,
            unlinked_at: r.unlinked_at,
            unlinked_by: r
                .unlinked_by
                .as_deref()
                .map(UnlinkedBy::parse)
                .transpose()?,
            last_event_at: r.last_event_at,
            flagged_stale_at: r.flagged_stale_at,
        })
    }
}

/// A link code, as shown to the driver once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkCode {
    /// The code's row.
    pub id: LinkCodeId,
    /// The code, e.g. `7K4Q-9XM2`; only its hash is kept.
    pub code: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

fn new_code() -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(LINK_CODE_LEN + 1);
    for i in 0..LINK_CODE_LEN {
        if i == LINK_CODE_LEN / 2 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    out
}

/// The code as typed, normalised: upper case, separators dropped, and the letters people mistake
/// for digits read as those digits. `None` when it cannot be a code.
pub fn normalise_code(input: &str) -> Option<String> {
    let mut out = String::with_capacity(LINK_CODE_LEN);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == LINK_CODE_LEN).then_some(out)
}

fn code_hash(normalised: &str) -> Vec<u8> {
    sha256(normalised.as_bytes())
}

#[derive(Insertable)]
#[diesel(table_name = partner_link_codes)]
#[diesel(treat_none_as_default_value = false)]
struct NewCodeRow {
    id: LinkCodeId,
    driver_id: DriverId,
    code_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// Creates a link code for the driver to give a partner; valid for
/// [`LINK_CODE_TTL_MINUTES`]. The plaintext is returned only here.
pub async fn create_link_code(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
) -> Result<LinkCode, PartnersError> {
    let now = clock.now();
    let expires_at = now + Duration::minutes(LINK_CODE_TTL_MINUTES);
    for _ in 0..CODE_ATTEMPTS {
        let code = new_code();
        let Some(normalised) = normalise_code(&code) else {
            continue;
        };
        let id = LinkCodeId::new();
        let inserted = diesel::insert_into(partner_link_codes::table)
            .values(NewCodeRow {
                id,
                driver_id,
                code_hash: code_hash(&normalised),
                created_at: now,
                expires_at,
            })
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            return Ok(LinkCode {
                id,
                code,
                expires_at,
            });
        }
    }
    Err(anyhow::anyhow!("no unused link code after {CODE_ATTEMPTS} draws").into())
}

fn check_external_id(external_driver_id: &str) -> Result<&str, PartnersError> {
    clean_text(external_driver_id).ok_or(PartnersError::InvalidExternalDriverId)
}

/// The partner's link in force for an external id, in the scope's mode.
pub(crate) async fn active_link(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    external_driver_id: &str,
) -> Result<Option<LinkRow>, PartnersError> {
    Ok(partner_driver_links::table
        .filter(partner_driver_links::partner_id.eq(scope.partner_id))
        .filter(partner_driver_links::test_mode.eq(scope.test_mode))
        .filter(partner_driver_links::external_driver_id.eq(external_driver_id))
        .filter(partner_driver_links::unlinked_at.is_null())
        .select(LinkRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The link in force for an external id, or why there is none: `UNKNOWN_DRIVER` (never linked)
/// or `NOT_LINKED` (linked once, unlinked since).
pub(crate) async fn resolve_link(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    external_driver_id: &str,
) -> Result<LinkRow, PartnersError> {
    if let Some(link) = active_link(conn, scope, external_driver_id).await? {
        return Ok(link);
    }
    let ever: i64 = partner_driver_links::table
        .filter(partner_driver_links::partner_id.eq(scope.partner_id))
        .filter(partner_driver_links::test_mode.eq(scope.test_mode))
        .filter(partner_driver_links::external_driver_id.eq(external_driver_id))
        .count()
        .get_result(conn)
        .await?;
    Err(if ever > 0 {
        PartnersError::NotLinked
    } else {
        PartnersError::UnknownDriver
    })
}

/// Links the driver who created `code` to the partner under `external_driver_id`.
///
/// Redeeming the same code again with the same external id returns the same link (a partner's
/// retry is harmless).
///
/// Errors: `INVALID_EXTERNAL_DRIVER_ID`, `INVALID_LINK_CODE` (unknown, malformed or already
/// used), `LINK_CODE_EXPIRED`, `EXTERNAL_ID_TAKEN` (the partner links this id to another driver),
/// `ALREADY_LINKED` (the driver is linked to the partner under another id).
pub async fn link_driver(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    code: &str,
    external_driver_id: &str,
) -> Result<Link, PartnersError> {
    let external = check_external_id(external_driver_id)?.to_owned();
    let normalised = normalise_code(code).ok_or(PartnersError::InvalidLinkCode)?;
    let hash = code_hash(&normalised);
    let now = clock.now();
    let result = conn
        .transaction::<_, PartnersError, _>(async |conn| {
            let found: Option<(LinkCodeId, DriverId, DateTime<Utc>, Option<LinkId>)> =
                partner_link_codes::table
                    .filter(partner_link_codes::code_hash.eq(&hash))
                    .select((
                        partner_link_codes::id,
                        partner_link_codes::driver_id,
                        partner_link_codes::expires_at,
                        partner_link_codes::link_id,
                    ))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
            let Some((code_id, driver_id, expires_at, used_by)) = found else {
                return Err(PartnersError::InvalidLinkCode);
            };
            if let Some(link_id) = used_by {
                // A retry of the same redemption answers the same link; anything else is a
                // code that is spent.
                let link: LinkRow = partner_driver_links::table
                    .find(link_id)
                    .select(LinkRow::as_select())
                    .first(conn)
                    .await?;
                let same = link.partner_id == scope.partner_id
                    && link.test_mode == scope.test_mode
                    && link.external_driver_id == external
                    && link.unlinked_at.is_none();
                return if same {
                    Link::try_from(link)
                } else {
                    Err(PartnersError::InvalidLinkCode)
                };
            }
            if expires_at <= now {
                return Err(PartnersError::LinkCodeExpired);
            }
            if let Some(existing) = active_link(conn, scope, &external).await? {
                return Err(if existing.driver_id == driver_id {
                    PartnersError::AlreadyLinked
                } else {
                    PartnersError::ExternalIdTaken
                });
            }
            let row = LinkRow {
                id: LinkId::new(),
                partner_id: scope.partner_id,
                driver_id,
                external_driver_id: external.clone(),
                test_mode: scope.test_mode,
                linked_at: now,
                unlinked_at: None,
                unlinked_by: None,
                last_event_at: None,
                flagged_stale_at: None,
            };
            let stored: LinkRow = diesel::insert_into(partner_driver_links::table)
                .values(&row)
                .returning(LinkRow::as_returning())
                .get_result(conn)
                .await?;
            diesel::update(partner_link_codes::table.find(code_id))
                .set((
                    partner_link_codes::used_at.eq(now),
                    partner_link_codes::link_id.eq(stored.id),
                ))
                .execute(conn)
                .await?;
            audit(
                conn,
                Actor::Partner(scope.partner_id),
                "partners.driver_linked",
                "partner_driver_link",
                stored.id.to_string(),
                serde_json::json!({
                    "driver_id": driver_id.to_string(),
                    "external_driver_id": external,
                    "test_mode": scope.test_mode,
                }),
            )
            .await?;
            Link::try_from(stored)
        })
        .await;
    match result {
        Err(PartnersError::Database(e)) if is_unique_violation(&e, Some(EXTERNAL_UNIQUE)) => {
            Err(PartnersError::ExternalIdTaken)
        }
        Err(PartnersError::Database(e)) if is_unique_violation(&e, Some(DRIVER_UNIQUE)) => {
            Err(PartnersError::AlreadyLinked)
        }
        other => other,
    }
}

/// Ends a link in force (the caller holds it locked) and tells the partner.
async fn unlink_locked(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    link: LinkRow,
    by: UnlinkedBy,
    actor: Actor,
) -> Result<Link, PartnersError> {
    let now = clock.now();
    let updated: LinkRow = diesel::update(partner_driver_links::table.find(link.id))
        .filter(partner_driver_links::unlinked_at.is_null())
        .set((
            partner_driver_links::unlinked_at.eq(now),
            partner_driver_links::unlinked_by.eq(by.as_str()),
        ))
        .returning(LinkRow::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(PartnersError::LinkNotFound)?;
    audit(
        conn,
        actor,
        "partners.driver_unlinked",
        "partner_driver_link",
        updated.id.to_string(),
        serde_json::json!({ "by": by.as_str(), "partner_id": updated.partner_id.to_string() }),
    )
    .await?;
    enqueue_event(
        conn,
        clock,
        PartnerScope {
            partner_id: updated.partner_id,
            test_mode: updated.test_mode,
        },
        EventType::DriverUnlinked,
        &format!("driver.unlinked:{}", updated.id),
        serde_json::json!({
            "external_driver_id": updated.external_driver_id,
            "unlinked_by": by.as_str(),
            "unlinked_at": now,
        }),
    )
    .await?;
    Link::try_from(updated)
}

/// The driver ends one of their links (from the app).
///
/// Errors: `LINK_NOT_FOUND` (unknown, another driver's, or already unlinked).
pub async fn unlink_by_driver(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    link_id: LinkId,
) -> Result<Link, PartnersError> {
    conn.transaction::<_, PartnersError, _>(async |conn| {
        let link: LinkRow = partner_driver_links::table
            .find(link_id)
            .filter(partner_driver_links::driver_id.eq(driver_id))
            .filter(partner_driver_links::unlinked_at.is_null())
            .select(LinkRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(PartnersError::LinkNotFound)?;
        unlink_locked(
            conn,
            clock,
            link,
            UnlinkedBy::Driver,
            Actor::Driver(driver_id),
        )
        .await
    })
    .await
}

/// The partner ends its link with one of its drivers.
///
/// Errors: `INVALID_EXTERNAL_DRIVER_ID`, `UNKNOWN_DRIVER`, `NOT_LINKED` (already unlinked).
pub async fn unlink_by_partner(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    external_driver_id: &str,
) -> Result<Link, PartnersError> {
    let external = check_external_id(external_driver_id)?.to_owned();
    conn.transaction::<_, PartnersError, _>(async |conn| {
        let link = resolve_link(conn, scope, &external).await?;
        let link: LinkRow = partner_driver_links::table
            .find(link.id)
            .select(LinkRow::as_select())
            .for_update()
            .first(conn)
            .await?;
        unlink_locked(
            conn,
            clock,
            link,
            UnlinkedBy::Partner,
            Actor::Partner(scope.partner_id),
        )
        .await
    })
    .await
}

/// An ops user ends a link.
///
/// Errors: `LINK_NOT_FOUND` (unknown or already unlinked).
pub async fn unlink_by_staff(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: accounts::StaffId,
    link_id: LinkId,
) -> Result<Link, PartnersError> {
    conn.transaction::<_, PartnersError, _>(async |conn| {
        let link: LinkRow = partner_driver_links::table
            .find(link_id)
            .filter(partner_driver_links::unlinked_at.is_null())
            .select(LinkRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(PartnersError::LinkNotFound)?;
        unlink_locked(conn, clock, link, UnlinkedBy::Staff, Actor::Staff(staff_id)).await
    })
    .await
}

/// The partner's links in force (in the scope's mode), oldest first, `first` (at most
/// [`MAX_PAGE_SIZE`]) after the link `after` (keyset on the time-ordered id).
pub async fn list_links_for_partner(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    after: Option<LinkId>,
    first: i64,
) -> Result<Vec<Link>, PartnersError> {
    let mut query = partner_driver_links::table
        .filter(partner_driver_links::partner_id.eq(scope.partner_id))
        .filter(partner_driver_links::test_mode.eq(scope.test_mode))
        .filter(partner_driver_links::unlinked_at.is_null())
        .select(LinkRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(partner_driver_links::id.gt(after));
    }
    query
        .order(partner_driver_links::id.asc())
        .limit(first.clamp(0, MAX_PAGE_SIZE))
        .load(conn)
        .await?
        .into_iter()
        .map(Link::try_from)
        .collect()
}

/// The driver's links in force, with every partner, oldest first.
pub async fn list_links_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Link>, PartnersError> {
    partner_driver_links::table
        .filter(partner_driver_links::driver_id.eq(driver_id))
        .filter(partner_driver_links::unlinked_at.is_null())
        .order(partner_driver_links::id.asc())
        .select(LinkRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Link::try_from)
        .collect()
}

/// The partner's link in force for an external id.
///
/// Errors: `INVALID_EXTERNAL_DRIVER_ID`, `UNKNOWN_DRIVER`, `NOT_LINKED`.
pub async fn get_link_for_partner(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    external_driver_id: &str,
) -> Result<Link, PartnersError> {
    let external = check_external_id(external_driver_id)?;
    Link::try_from(resolve_link(conn, scope, external).await?)
}

/// Flags links in force with no event (or, without any, no link) for `idle` or longer, and
/// returns those newly flagged. Flagged links keep working; the next event clears the flag.
/// For the workers' cron and ops.
pub async fn flag_stale_links(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    idle: Duration,
) -> Result<Vec<Link>, PartnersError> {
    let now = clock.now();
    let before = now - idle;
    let rows: Vec<LinkRow> = diesel::update(partner_driver_links::table)
        .filter(partner_driver_links::unlinked_at.is_null())
        .filter(partner_driver_links::flagged_stale_at.is_null())
        .filter(
            partner_driver_links::last_event_at
                .lt(before)
                .or(partner_driver_links::last_event_at
                    .is_null()
                    .and(partner_driver_links::linked_at.lt(before))),
        )
        .set(partner_driver_links::flagged_stale_at.eq(now))
        .returning(LinkRow::as_returning())
        .get_results(conn)
        .await?;
    if !rows.is_empty() {
        tracing::info!(flagged = rows.len(), "partner links flagged as stale");
    }
    rows.into_iter().map(Link::try_from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_published_shape_and_normalise() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert_eq!(normalise_code(&c).unwrap(), c.replace('-', ""));
        }
        assert_eq!(normalise_code("7k4q 9xm2").as_deref(), Some("7K4Q9XM2"));
        assert_eq!(normalise_code("OIL0-0000").as_deref(), Some("01100000"));
        assert_eq!(normalise_code("7K4Q-9XM"), None);
        assert_eq!(normalise_code("7K4Q-9XMU"), None);
        assert_eq!(normalise_code("7K4Q-9XM£"), None);
    }
}
