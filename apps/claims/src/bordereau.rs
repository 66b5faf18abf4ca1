//! The claims bordereau: one row per claim open at some time in a month, with its status,
//! amount paid and reserve as they stood at the month's end, for the finance reports.
//!
//! Months are UK calendar months (the time zone cover and its charges follow). A claim is in a
//! month's bordereau when it was reported before the month ended and was not closed before the
//! month began.

use crate::claims::ClaimStatus;
use crate::error::ClaimsError;
use crate::schema::{claim_reserve_changes, claim_status_changes, claims};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::{Currency, Money};

/// One row of the claims bordereau.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BordereauRow {
    /// The claim reference (`CLM-…`).
    pub claim_reference: String,
    /// The certificate of the session that covered the loss; `None` when there was no cover.
    pub certificate_reference: Option<String>,
    /// When the loss happened.
    pub date_of_loss: DateTime<Utc>,
    /// When the driver reported it.
    pub date_advised: DateTime<Utc>,
    /// The status at the month's end.
    pub status: ClaimStatus,
    /// Paid by the month's end (zero unless settled by then).
    pub paid: Money,
    /// The reserve at the month's end (zero when none was set; zero once closed).
    pub reserve: Money,
}

/// The UTC bounds `[start, end)` of a UK calendar month. Errors: `INVALID_MONTH` as an internal
/// error for a month that does not exist.
pub fn month_bounds(year: i32, month: u32) -> Result<(DateTime<Utc>, DateTime<Utc>), ClaimsError> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| anyhow::anyhow!("no month {year}-{month}"))?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .ok_or_else(|| anyhow::anyhow!("no month after {year}-{month}"))?;
    let midnight = |d: NaiveDate| {
        cover::COVER_TIME_ZONE
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| anyhow::anyhow!("no UK midnight on {d}"))
    };
    Ok((midnight(first)?, midnight(next)?))
}

/// The bordereau rows of a UK calendar month, by date advised then reference.
pub async fn bordereau_rows(
    conn: &mut AsyncPgConnection,
    year: i32,
    month: u32,
) -> Result<Vec<BordereauRow>, ClaimsError> {
    let (start, end) = month_bounds(year, month)?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        crate::ids::ClaimId,
        String,
        Option<String>,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
        Option<i64>,
    )> = claims::table
        .filter(claims::reported_at.lt(end))
        .filter(claims::closed_at.is_null().or(claims::closed_at.ge(start)))
        .order((claims::reported_at.asc(), claims::reference.asc()))
        .select((
            claims::id,
            claims::reference,
            claims::certificate_number,
            claims::occurred_at,
            claims::reported_at,
            claims::currency,
            claims::paid_minor,
        ))
        .load(conn)
        .await?;
    let ids: Vec<crate::ids::ClaimId> = rows.iter().map(|r| r.0).collect();
    let changes: Vec<(crate::ids::ClaimId, String)> = claim_status_changes::table
        .filter(claim_status_changes::claim_id.eq_any(&ids))
        .filter(claim_status_changes::occurred_at.lt(end))
        .order((
            claim_status_changes::occurred_at.asc(),
            claim_status_changes::id.asc(),
        ))
        .select((
            claim_status_changes::claim_id,
            claim_status_changes::to_status,
        ))
        .load(conn)
        .await?;
    let reserves: Vec<(crate::ids::ClaimId, i64)> = claim_reserve_changes::table
        .filter(claim_reserve_changes::claim_id.eq_any(&ids))
        .filter(claim_reserve_changes::occurred_at.lt(end))
        .order((
            claim_reserve_changes::occurred_at.asc(),
            claim_reserve_changes::id.asc(),
        ))
        .select((
            claim_reserve_changes::claim_id,
            claim_reserve_changes::reserve_minor,
        ))
        .load(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, reference, certificate, occurred_at, reported_at, currency, paid_minor) in rows {
        let currency: Currency = currency.parse().map_err(anyhow::Error::new)?;
        let status = changes
            .iter()
            .rev()
            .find(|(c, _)| *c == id)
            .map(|(_, s)| s.parse::<ClaimStatus>())
            .transpose()?
            .unwrap_or(ClaimStatus::Reported);
        let paid = if status == ClaimStatus::Settled {
            paid_minor.unwrap_or(0)
        } else {
            0
        };
        let reserve = if status.is_closed() {
            0
        } else {
            reserves
                .iter()
                .rev()
                .find(|(c, _)| *c == id)
                .map_or(0, |(_, r)| *r)
        };
        out.push(BordereauRow {
            claim_reference: reference,
            certificate_reference: certificate,
            date_of_loss: occurred_at,
            date_advised: reported_at,
            status,
            paid: Money {
                minor: paid,
                currency,
            },
            reserve: Money {
                minor: reserve,
                currency,
            },
        });
    }
    Ok(out)
}
