//! Quotes: a driver's price for cover of one vehicle on a product's published version, locked for
//! [`QUOTE_VALIDITY_MINUTES`].
//!
//! Invariants:
//! - a quote is only ever stored against the product's published version at the moment of the
//!   insert (a database trigger refuses any other), and records that version;
//! - its one-hour breakdown adds up to its hourly rate (a database check);
//! - a driver only ever sees their own quotes: another driver's answers `QUOTE_NOT_FOUND`.
//!
//! `create_quote` is on the hot path of the API, so it keeps round trips down (with the version
//! remembered: the driver with the vehicle in one read, then the insert): published versions are
//! immutable, so the one
//! last seen for each product is kept in memory, with its product (whose code and name nothing
//! changes), and the insert's trigger confirms it is still the published one. When it is not (a
//! new version was published or it was retired), the version is read again and the quote rated
//! again. Callers that already hold the driver and vehicle use [`create_quote_for`] and save the
//! read; [`quote_labels`] gives the product and version number a quote is shown with, from
//! memory for quotes on the remembered version.
//!
//! Durability: a quote moves no money and a driver can ask for another at once, so a quote made
//! on its own (not inside a caller's transaction) does not wait for its commit to reach the disk
//! (`synchronous_commit` off for that one insert). A crash of the database can lose the last
//! few such quotes, and nothing else: whatever durable change records a quote (a cover session)
//! commits after it, and a durable commit flushes the write-ahead log up to its own commit
//! record, so also the quote's, which comes before it. A quote stored inside a caller's
//! transaction ([`store_quote`], or [`create_quote_for`] within one) is as durable as that
//! transaction.

use crate::charges::ChargeBreakdown;
use crate::error::PricingError;
use crate::ids::{ProductId, ProductVersionId, QuoteId};
use crate::products::{get_product, get_published};
use crate::rating::{FactorLine, RATING_TIME_ZONE, RatingInput};
use crate::schema::{product_version_rules, product_versions, products, quotes};
use crate::version::{Product, ProductVersion};
use accounts::{AccountsError, Driver, DriverId, Vehicle, VehicleId};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::{Clock, Money};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

/// How long a quote's price holds.
pub const QUOTE_VALIDITY_MINUTES: i64 = 15;

/// Times `create_quote` re-reads the published version after finding it changed.
const STALE_VERSION_RETRIES: usize = 3;

/// A quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// The quote.
    pub id: QuoteId,
    /// Whose it is.
    pub driver_id: DriverId,
    /// The vehicle it covers.
    pub vehicle_id: VehicleId,
    /// The product.
    pub product_id: ProductId,
    /// The version it was rated on.
    pub product_version_id: ProductVersionId,
    /// The price of one hour.
    pub hourly_rate: Money,
    /// The least a session costs: the minimum charge minutes at the hourly rate (capped).
    pub minimum_charge: Money,
    /// The most a driver pays in one day.
    pub daily_cap: Money,
    /// One hour's price split into net premium, commission and IPT.
    pub one_hour: ChargeBreakdown,
    /// One line per rating factor, in the order applied.
    pub explanation: Vec<FactorLine>,
    /// The facts rated (the postcode reduced to its area).
    pub rating_input: RatingInput,
    /// When it was given.
    pub created_at: DateTime<Utc>,
    /// When its price stops holding.
    pub expires_at: DateTime<Utc>,
}

impl Quote {
    /// Whether the price still holds at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = quotes)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct QuoteRow {
    id: QuoteId,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_version_id: ProductVersionId,
    currency: String,
    hourly_rate_minor: i64,
    minimum_charge_minor: i64,
    daily_cap_minor: i64,
    one_hour_net_minor: i64,
    one_hour_commission_minor: i64,
    one_hour_ipt_minor: i64,
    one_hour_total_minor: i64,
    explanation: serde_json::Value,
    rating_input: serde_json::Value,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl QuoteRow {
    fn from_quote(q: &Quote) -> Result<Self, PricingError> {
        Ok(QuoteRow {
            id: q.id,
            driver_id: q.driver_id,
            vehicle_id: q.vehicle_id,
            product_version_id: q.product_version_id,
            currency: q.hourly_rate.currency.code().to_owned(),
            hourly_rate_minor: q.hourly_rate.minor,
            minimum_charge_minor: q.minimum_charge.minor,
            daily_cap_minor: q.daily_cap.minor,
            one_hour_net_minor: q.one_hour.net_premium.minor,
            one_hour_commission_minor: q.one_hour.commission.minor,
            one_hour_ipt_minor: q.one_hour.ipt.minor,
            one_hour_total_minor: q.one_hour.total.minor,
            explanation: serde_json::to_value(&q.explanation).map_err(anyhow::Error::new)?,
            rating_input: serde_json::to_value(&q.rating_input).map_err(anyhow::Error::new)?,
            created_at: q.created_at,
            expires_at: q.expires_at,
        })
    }

    fn into_quote(
        self,
        product_id: ProductId,
        commission_bp: i32,
        ipt_bp: i32,
    ) -> Result<Quote, PricingError> {
        let currency = self.currency.parse().map_err(anyhow::Error::new)?;
        let m = |minor| Money { minor, currency };
        let rate = |bp: i32| {
            u32::try_from(bp).map_err(|_| anyhow::anyhow!("stored rate {bp} is negative"))
        };
        Ok(Quote {
            id: self.id,
            driver_id: self.driver_id,
            vehicle_id: self.vehicle_id,
            product_id,
            product_version_id: self.product_version_id,
            hourly_rate: m(self.hourly_rate_minor),
            minimum_charge: m(self.minimum_charge_minor),
            daily_cap: m(self.daily_cap_minor),
            one_hour: ChargeBreakdown {
                total: m(self.one_hour_total_minor),
                net_premium: m(self.one_hour_net_minor),
                commission: m(self.one_hour_commission_minor),
                ipt: m(self.one_hour_ipt_minor),
                ipt_rate_bp: rate(ipt_bp)?,
                ipt_basis: m(self.one_hour_total_minor - self.one_hour_ipt_minor),
                commission_rate_bp: rate(commission_bp)?,
            },
            explanation: serde_json::from_value(self.explanation)
                .map_err(|e| anyhow::anyhow!("quote {} explanation: {e}", self.id))?,
            rating_input: serde_json::from_value(self.rating_input)
                .map_err(|e| anyhow::anyhow!("quote {} rating input: {e}", self.id))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The published version last seen per product.

/// A product's published version as last seen, with its product.
#[derive(Debug)]
struct Published {
    version: Arc<ProductVersion>,
    product: Arc<Product>,
}

static PUBLISHED: LazyLock<RwLock<HashMap<ProductId, Published>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn remembered_published(product_id: ProductId) -> Option<Arc<ProductVersion>> {
    PUBLISHED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&product_id)
        .map(|p| Arc::clone(&p.version))
}

/// The product and version number of a version, when it is the remembered published one.
fn remembered_labels(product_id: ProductId, version_id: ProductVersionId) -> Option<QuoteLabels> {
    PUBLISHED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&product_id)
        .filter(|p| p.version.id == version_id)
        .map(|p| QuoteLabels {
            product: Arc::clone(&p.product),
            version_number: p.version.version_number,
        })
}

/// The product and version number of a quote, when its version is the published one this
/// process remembers (as every quote it has just made is); `None` means [`quote_labels`] reads them.
pub fn remembered_quote_labels(quote: &Quote) -> Option<QuoteLabels> {
    remembered_labels(quote.product_id, quote.product_version_id)
}

/// Forgets the published version remembered for a product (after it changed in this process; other
/// processes find out at their next insert).
pub(crate) fn forget_published(product_id: ProductId) {
    PUBLISHED
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&product_id);
}

async fn load_published(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<Arc<ProductVersion>, PricingError> {
    let version = Arc::new(get_published(conn, product_id).await?);
    let product = Arc::new(get_product(conn, product_id).await?);
    PUBLISHED.write().unwrap_or_else(|p| p.into_inner()).insert(
        product_id,
        Published {
            version: Arc::clone(&version),
            product,
        },
    );
    Ok(version)
}

/// The published version of a product, as last seen by this process (read and remembered when
/// not seen yet). Published versions never change, but another process may since have published
/// a newer one or retired this one: what is stored on the strength of it must be checked by the
/// database, as the quote insert is. Errors: `PRODUCT_NOT_FOUND`, `PRODUCT_NOT_AVAILABLE`.
pub async fn published_version(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<Arc<ProductVersion>, PricingError> {
    match remembered_published(product_id) {
        Some(v) => Ok(v),
        None => load_published(conn, product_id).await,
    }
}

/// A version by id for pricing what was sold on it: from memory when it is a remembered
/// published version, else read. A version's terms never change once published; its status
/// here is as last seen (it may have been retired since).
///
/// Errors: `VERSION_NOT_FOUND`.
pub async fn get_version_terms(
    conn: &mut AsyncPgConnection,
    version_id: ProductVersionId,
) -> Result<Arc<ProductVersion>, PricingError> {
    let remembered = PUBLISHED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .find(|p| p.version.id == version_id)
        .map(|p| Arc::clone(&p.version));
    match remembered {
        Some(v) => Ok(v),
        None => Ok(Arc::new(
            crate::products::get_version(conn, version_id).await?,
        )),
    }
}

/// What a quote is shown with: its product and the number of the version it was rated on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteLabels {
    /// The product.
    pub product: Arc<Product>,
    /// The number of the version the quote was rated on.
    pub version_number: i32,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = products)]
struct ProductLabelRow {
    id: ProductId,
    code: String,
    name: String,
    created_at: DateTime<Utc>,
}

/// The product and version number of a quote: from memory when the quote is on the remembered
/// published version (every quote just made is), else in one read.
///
/// Errors: `VERSION_NOT_FOUND`.
pub async fn quote_labels(
    conn: &mut AsyncPgConnection,
    quote: &Quote,
) -> Result<QuoteLabels, PricingError> {
    if let Some(labels) = remembered_labels(quote.product_id, quote.product_version_id) {
        return Ok(labels);
    }
    let (row, version_number): (ProductLabelRow, i32) = product_versions::table
        .inner_join(products::table)
        .filter(product_versions::id.eq(quote.product_version_id))
        .select((
            ProductLabelRow::as_select(),
            product_versions::version_number,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(PricingError::VersionNotFound)?;
    Ok(QuoteLabels {
        product: Arc::new(Product {
            id: row.id,
            code: row.code,
            name: row.name,
            created_at: row.created_at,
        }),
        version_number,
    })
}

// ---------------------------------------------------------------------------------------------
// Building a quote

/// The rating facts of a driver and vehicle when cover starts at `start`: age and years licensed
/// on the UK date of `start`, the postcode area, and no claims (claims history is not recorded
/// yet).
///
/// Errors: `PROFILE_INCOMPLETE` with the missing field (`dateOfBirth`, `licenceIssuedOn`,
/// `postcode`).
pub fn rating_input_for(
    driver: &Driver,
    vehicle: &Vehicle,
    start: DateTime<Utc>,
) -> Result<RatingInput, PricingError> {
    let today = start.with_timezone(&RATING_TIME_ZONE).date_naive();
    let age = driver
        .age_on(today)
        .ok_or(PricingError::ProfileIncomplete("dateOfBirth"))?;
    let years = driver
        .years_licensed_on(today)
        .ok_or(PricingError::ProfileIncomplete("licenceIssuedOn"))?;
    let area = driver
        .postcode_area()
        .ok_or(PricingError::ProfileIncomplete("postcode"))?;
    Ok(RatingInput {
        vehicle_type: vehicle.vehicle_type,
        driver_age: u32::try_from(age.max(0)).unwrap_or(0),
        years_licensed: u32::try_from(years.max(0)).unwrap_or(0),
        claims_5y: 0,
        postcode: area.to_owned(),
        start,
    })
}

/// Rates and prices a quote in memory (nothing is stored).
///
/// Errors: the decline codes of [`VersionTerms::rate`](crate::version::VersionTerms::rate) as
/// [`PricingError::Declined`].
pub fn build_quote(
    version: &ProductVersion,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    input: RatingInput,
    now: DateTime<Utc>,
) -> Result<Quote, PricingError> {
    let terms = &version.terms;
    let rate = terms.rate(&input).map_err(PricingError::Declined)?;
    Ok(Quote {
        id: QuoteId::new(),
        driver_id,
        vehicle_id,
        product_id: version.product_id,
        product_version_id: version.id,
        hourly_rate: rate.hourly,
        minimum_charge: terms.minimum_charge(rate.hourly)?,
        daily_cap: terms.daily_cap(),
        one_hour: terms.breakdown(rate.hourly)?,
        explanation: rate.explanation,
        rating_input: input,
        created_at: now,
        expires_at: now + Duration::minutes(QUOTE_VALIDITY_MINUTES),
    })
}

/// Inserts a quote. Inside a caller's transaction, the insert runs in a savepoint, so that a
/// refusal (stale version) leaves the caller's transaction usable for the retry. On its own, the
/// insert commits without waiting for the disk (see the module's "Durability").
async fn insert_quote(
    conn: &mut AsyncPgConnection,
    row: &QuoteRow,
) -> Result<(), diesel::result::Error> {
    if shared::db::in_transaction(conn) {
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::insert_into(quotes::table)
                .values(row)
                .execute(conn)
                .await
                .map(drop)
        })
        .await
    } else {
        insert_quote_async_commit(conn, row).await
    }
}

/// The quote insert as one statement that is its own transaction, with `synchronous_commit`
/// off for that transaction only: `set_config(…, true)` lasts until the end of the current
/// transaction, which here is the statement's, and its commit is the one it relaxes. One round
/// trip, like a plain insert, and prepared once per connection.
async fn insert_quote_async_commit(
    conn: &mut AsyncPgConnection,
    row: &QuoteRow,
) -> Result<(), diesel::result::Error> {
    use diesel::sql_types::{BigInt, Jsonb, Text, Timestamptz, Uuid};
    shared::sql::prepared(
        "INSERT INTO quotes (id, driver_id, vehicle_id, product_version_id, currency,
                hourly_rate_minor, minimum_charge_minor, daily_cap_minor, one_hour_net_minor,
                one_hour_commission_minor, one_hour_ipt_minor, one_hour_total_minor,
                explanation, rating_input, created_at, expires_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16
           FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit",
    )
    .bind::<Uuid, _>(row.id.uuid())
    .bind::<Uuid, _>(row.driver_id.uuid())
    .bind::<Uuid, _>(row.vehicle_id.uuid())
    .bind::<Uuid, _>(row.product_version_id.uuid())
    .bind::<Text, _>(&row.currency)
    .bind::<BigInt, _>(row.hourly_rate_minor)
    .bind::<BigInt, _>(row.minimum_charge_minor)
    .bind::<BigInt, _>(row.daily_cap_minor)
    .bind::<BigInt, _>(row.one_hour_net_minor)
    .bind::<BigInt, _>(row.one_hour_commission_minor)
    .bind::<BigInt, _>(row.one_hour_ipt_minor)
    .bind::<BigInt, _>(row.one_hour_total_minor)
    .bind::<Jsonb, _>(&row.explanation)
    .bind::<Jsonb, _>(&row.rating_input)
    .bind::<Timestamptz, _>(row.created_at)
    .bind::<Timestamptz, _>(row.expires_at)
    .execute(conn)
    .await
    .map(drop)
}

/// Quote inserts for many requests as one statement, the batched store of
/// [`create_quote_batched`] ([`shared::batch`]): one transaction for all the rows, its commit
/// asynchronous as [`insert_quote_async_commit`]'s. A batch of one is that statement itself.
#[derive(Debug, Default)]
pub(crate) struct QuoteInserts;

impl shared::batch::BatchQuery for QuoteInserts {
    type Input = QuoteRow;
    type Output = ();
    const NAME: &'static str = "quote inserts";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        rows: &'a [QuoteRow],
    ) -> shared::batch::BatchFuture<'a, ()> {
        Box::pin(async move {
            if let [row] = rows {
                insert_quote_async_commit(conn, row).await?;
                return Ok(vec![()]);
            }
            let inserted = insert_quotes_async_commit(conn, rows).await?;
            Ok(vec![(); inserted])
        })
    }
}

/// What this process's batched quote inserts have done so far (for benchmarks and metrics).
pub fn quote_insert_stats(core: &shared::core::Core) -> shared::batch::BatchStats {
    core.batcher::<QuoteInserts>().stats()
}

/// Several quotes in one insert over arrays (one per column), as its own transaction with
/// `synchronous_commit` off for it; returns how many rows were inserted.
async fn insert_quotes_async_commit(
    conn: &mut AsyncPgConnection,
    rows: &[QuoteRow],
) -> Result<usize, diesel::result::Error> {
    bind_quote_columns(
        shared::sql::prepared(
            "INSERT INTO quotes (id, driver_id, vehicle_id, product_version_id, currency,
                    hourly_rate_minor, minimum_charge_minor, daily_cap_minor, one_hour_net_minor,
                    one_hour_commission_minor, one_hour_ipt_minor, one_hour_total_minor,
                    explanation, rating_input, created_at, expires_at)
             SELECT q.*
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int8[],
                           $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                           $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[]) AS q,
                    (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit",
        ),
        rows,
    )
    .execute(conn)
    .await
}

/// Binds `rows` column by column as `$1` to `$16` (arrays) of a quote insert over `unnest`.
fn bind_quote_columns<'q>(
    query: shared::sql::Prepared<'q>,
    rows: &'q [QuoteRow],
) -> shared::sql::Prepared<'q> {
    use diesel::sql_types::{Array, BigInt, Jsonb, Text, Timestamptz, Uuid};
    fn column<'r, T>(rows: &'r [QuoteRow], f: impl Fn(&'r QuoteRow) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    query
        .bind::<Array<Uuid>, _>(column(rows, |r| r.id.uuid()))
        .bind::<Array<Uuid>, _>(column(rows, |r| r.driver_id.uuid()))
        .bind::<Array<Uuid>, _>(column(rows, |r| r.vehicle_id.uuid()))
        .bind::<Array<Uuid>, _>(column(rows, |r| r.product_version_id.uuid()))
        .bind::<Array<Text>, _>(column(rows, |r| r.currency.as_str()))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.hourly_rate_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.minimum_charge_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.daily_cap_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.one_hour_net_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.one_hour_commission_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.one_hour_ipt_minor))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.one_hour_total_minor))
        .bind::<Array<Jsonb>, _>(column(rows, |r| &r.explanation))
        .bind::<Array<Jsonb>, _>(column(rows, |r| &r.rating_input))
        .bind::<Array<Timestamptz>, _>(column(rows, |r| r.created_at))
        .bind::<Array<Timestamptz>, _>(column(rows, |r| r.expires_at))
}

/// [`store_quote`] for several quotes in one statement (over arrays), inside the caller's
/// transaction. When any quote's version is no longer the published one, the database refuses
/// them all (the error is recognised by [`is_version_not_published`]) and those versions are
/// forgotten.
pub async fn store_quotes(
    conn: &mut AsyncPgConnection,
    quotes: &[Quote],
) -> Result<(), PricingError> {
    if quotes.is_empty() {
        return Ok(());
    }
    let rows = quotes
        .iter()
        .map(QuoteRow::from_quote)
        .collect::<Result<Vec<_>, _>>()?;
    let inserted = bind_quote_columns(
        shared::sql::prepared(
            "INSERT INTO quotes (id, driver_id, vehicle_id, product_version_id, currency,
                    hourly_rate_minor, minimum_charge_minor, daily_cap_minor, one_hour_net_minor,
                    one_hour_commission_minor, one_hour_ipt_minor, one_hour_total_minor,
                    explanation, rating_input, created_at, expires_at)
             SELECT *
               FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int8[],
                           $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                           $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[])",
        ),
        &rows,
    )
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) => {
            if is_stale_version(&e) {
                for q in quotes {
                    forget_published(q.product_id);
                }
            }
            Err(e.into())
        }
    }
}

fn is_stale_version(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::CheckViolation, info)
            if info.constraint_name() == Some("quotes_version_published")
    )
}

/// Whether a database error is the refusal of a quote whose version is no longer the product's
/// published one (see [`store_quote`]).
pub fn is_version_not_published(e: &diesel::result::Error) -> bool {
    is_stale_version(e)
}

/// Stores a quote rated in memory (by [`build_quote`] on [`published_version`]) inside the
/// caller's transaction, with no savepoint of its own: it is as durable as that transaction and
/// costs one round trip.
///
/// When the quote's version is no longer the published one, the database refuses the insert
/// and the caller's transaction is aborted: the error is `Database`, recognised by
/// [`is_version_not_published`]; the caller rolls back and may rate again on
/// [`published_version`], which will have read the new version (this one is forgotten).
pub async fn store_quote(conn: &mut AsyncPgConnection, quote: &Quote) -> Result<(), PricingError> {
    let row = QuoteRow::from_quote(quote)?;
    match diesel::insert_into(quotes::table)
        .values(&row)
        .execute(conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            if is_stale_version(&e) {
                forget_published(quote.product_id);
            }
            Err(e.into())
        }
    }
}

/// Quotes cover for a driver's vehicle on a product's published version, and stores the quote.
///
/// The driver and vehicle are read through the accounts app. Rating uses the driver's age and
/// years licensed on today's UK date and their postcode area.
///
/// Errors: `PRODUCT_NOT_FOUND`, `PRODUCT_NOT_AVAILABLE` (`productId`); `DRIVER_NOT_FOUND`
/// (`driverId`); `VEHICLE_NOT_FOUND` (`vehicleId`: unknown, removed, or another driver's);
/// `PROFILE_INCOMPLETE`; the decline codes (`VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`,
/// `TOO_MANY_CLAIMS`, `INVALID_POSTCODE`).
pub async fn create_quote(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_id: ProductId,
) -> Result<Quote, PricingError> {
    let version = published_version(conn, product_id).await?;
    let (driver, vehicle) = accounts::get_driver_and_vehicle(conn, driver_id, vehicle_id)
        .await
        .map_err(driver_or_vehicle_error)?;
    store_new_quote(conn, clock.now(), version, &driver, &vehicle).await
}

/// [`create_quote`] for a request, with no connection of its own: the driver and vehicle are
/// read, and the quote stored, each in one statement with the other requests doing the same at
/// that moment ([`shared::batch`]). A connection is taken from the pool only to read a product's
/// published version this process has not seen yet.
///
/// Errors: those of [`create_quote`].
pub async fn create_quote_batched(
    core: &shared::core::Core,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_id: ProductId,
) -> Result<Quote, PricingError> {
    let mut version = match remembered_published(product_id) {
        Some(v) => v,
        None => load_published(&mut *pooled(core).await?, product_id).await?,
    };
    let (driver, vehicle) = accounts::get_driver_and_vehicle_batched(core, driver_id, vehicle_id)
        .await
        .map_err(driver_or_vehicle_error)?;
    let now = core.clock.now();
    let input = rating_input_for(&driver, &vehicle, now)?;
    let inserts = core.batcher::<QuoteInserts>();
    for _ in 0..STALE_VERSION_RETRIES {
        let quote = build_quote(&version, driver.id, vehicle.id, input.clone(), now)?;
        match inserts.call(QuoteRow::from_quote(&quote)?).await {
            Ok(()) => return Ok(quote),
            Err(shared::batch::BatchError::Query(e)) if is_stale_version(&e) => {
                forget_published(product_id);
                version = load_published(&mut *pooled(core).await?, product_id).await?;
            }
            Err(shared::batch::BatchError::Query(e)) => return Err(e.into()),
            Err(other) => return Err(PricingError::Internal(other.into())),
        }
    }
    Err(anyhow::anyhow!("product {product_id}: the published version kept changing").into())
}

async fn pooled(core: &shared::core::Core) -> Result<shared::db::DbConn, PricingError> {
    core.pool
        .get()
        .await
        .map_err(|e| PricingError::Internal(anyhow::anyhow!("database pool: {e}")))
}

fn driver_or_vehicle_error(e: AccountsError) -> PricingError {
    match e {
        AccountsError::NotFound("driverId") => PricingError::DriverNotFound,
        AccountsError::NotFound(_) => PricingError::VehicleNotFound,
        other => PricingError::Internal(other.into()),
    }
}

/// [`create_quote`] for a caller that has just read the driver and the vehicle (through the
/// accounts app), saving the read.
///
/// Errors: those of [`create_quote`]; `VEHICLE_NOT_FOUND` when the vehicle is not the driver's.
pub async fn create_quote_for(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver: &Driver,
    vehicle: &Vehicle,
    product_id: ProductId,
) -> Result<Quote, PricingError> {
    let version = published_version(conn, product_id).await?;
    if vehicle.driver_id != driver.id {
        return Err(PricingError::VehicleNotFound);
    }
    store_new_quote(conn, clock.now(), version, driver, vehicle).await
}

/// Rates and stores a quote on `version`, rating again on the newly published version when the
/// insert finds `version` is no longer the published one.
async fn store_new_quote(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    mut version: Arc<ProductVersion>,
    driver: &Driver,
    vehicle: &Vehicle,
) -> Result<Quote, PricingError> {
    let product_id = version.product_id;
    let input = rating_input_for(driver, vehicle, now)?;
    for _ in 0..STALE_VERSION_RETRIES {
        let quote = build_quote(&version, driver.id, vehicle.id, input.clone(), now)?;
        let row = QuoteRow::from_quote(&quote)?;
        match insert_quote(conn, &row).await {
            Ok(_) => return Ok(quote),
            Err(e) if is_stale_version(&e) => {
                forget_published(product_id);
                version = load_published(conn, product_id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow::anyhow!("product {product_id}: the published version kept changing").into())
}

async fn load_quote(
    conn: &mut AsyncPgConnection,
    quote_id: QuoteId,
) -> Result<Quote, PricingError> {
    let (row, product_id, commission_bp, ipt_bp): (QuoteRow, ProductId, i32, i32) = quotes::table
        .inner_join(product_versions::table.inner_join(product_version_rules::table))
        .filter(quotes::id.eq(quote_id))
        .select((
            QuoteRow::as_select(),
            product_versions::product_id,
            product_version_rules::commission_bp,
            product_version_rules::ipt_bp,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(PricingError::QuoteNotFound)?;
    row.into_quote(product_id, commission_bp, ipt_bp)
}

/// A quote by id, valid or not, whoever's it is (for ops and for apps that recorded it).
/// Errors: `QUOTE_NOT_FOUND`.
pub async fn get_quote(
    conn: &mut AsyncPgConnection,
    quote_id: QuoteId,
) -> Result<Quote, PricingError> {
    load_quote(conn, quote_id).await
}

/// One of the driver's quotes whose price still holds.
///
/// Errors: `QUOTE_NOT_FOUND` (also another driver's), `QUOTE_EXPIRED`.
pub async fn get_valid_quote(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    quote_id: QuoteId,
) -> Result<Quote, PricingError> {
    let quote = load_quote(conn, quote_id).await?;
    if quote.driver_id != driver_id {
        return Err(PricingError::QuoteNotFound);
    }
    if !quote.is_valid_at(clock.now()) {
        return Err(PricingError::QuoteExpired);
    }
    Ok(quote)
}
