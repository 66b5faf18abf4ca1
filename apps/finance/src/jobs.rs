//! The finance jobs and their handlers; `workers` registers them and binds the cron schedules.
//!
//! - [`ReconcileStripeDay`] (`daily_reconciliation`): imports the previous UTC day's balance
//!   transactions and payouts from Stripe (resuming an unfinished import), rolls the ledger up to
//!   yesterday and reconciles the day. Safe to run twice: imports are idempotent and a second
//!   reconciliation only adds a run (exceptions stay one per item).
//! - [`BuildMonthlyBordereau`] (`monthly_bordereau`): rolls the ledger up and builds the UK month
//!   just ended, checking that its line totals equal the ledger's premium accounts; a difference
//!   fails the job so it is dead-lettered in front of ops.
//! - [`SendWeeklyStatements`] (`weekly_statements`): emails every driver whose wallet moved in the
//!   week just ended a summary with a link to the statement; one notification per driver and week
//!   (the notification's cause is the idempotency key).

use crate::error::FinanceError;
use crate::import::{StripeReader, import_balance_transactions, import_payouts};
use crate::period::{Month, day_bounds};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use shared::{Clock, Settings};

/// Every finance job type, for the workers' registration.
pub const JOB_TYPES: [&str; 4] = [
    ReconcileStripeDay::TYPE,
    BuildMonthlyBordereau::TYPE,
    SendWeeklyStatements::TYPE,
    crate::exports::BuildFinanceExport::TYPE,
];

/// The finance queue.
pub const QUEUE: &str = "finance";

/// Imports and reconciles the UTC day before the tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileStripeDay {
    /// The scheduler tick.
    pub tick: DateTime<Utc>,
}

impl ReconcileStripeDay {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for ReconcileStripeDay {
    const TYPE: &'static str = "ReconcileStripeDay";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i32 = 8;

    fn idempotency_key(&self) -> String {
        format!("daily_reconciliation:{}", self.tick.timestamp())
    }
}

/// Builds the bordereau of the month before the tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMonthlyBordereau {
    /// The scheduler tick.
    pub tick: DateTime<Utc>,
}

impl BuildMonthlyBordereau {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for BuildMonthlyBordereau {
    const TYPE: &'static str = "BuildMonthlyBordereau";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("monthly_bordereau:{}", self.tick.timestamp())
    }
}

/// Emails the statements of the week before the tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWeeklyStatements {
    /// The scheduler tick.
    pub tick: DateTime<Utc>,
}

impl SendWeeklyStatements {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for SendWeeklyStatements {
    const TYPE: &'static str = "SendWeeklyStatements";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i32 = 5;

    fn idempotency_key(&self) -> String {
        format!("weekly_statements:{}", self.tick.timestamp())
    }
}

fn job_error(e: FinanceError) -> JobError {
    match e {
        FinanceError::Stripe(_) | FinanceError::Db(_) | FinanceError::Pool(_) => {
            JobError::Retry(anyhow::Error::new(e))
        }
        e => JobError::Permanent(anyhow::Error::new(e)),
    }
}

/// Imports one UTC day's balance transactions and payouts from Stripe.
pub async fn import_day(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    clock: &dyn Clock,
    day: NaiveDate,
) -> Result<(), FinanceError> {
    crate::period::check_day_started("day", day, clock.now())?;
    let stripe = StripeReader::new(&settings.stripe)?;
    let (start, end) = day_bounds(day);
    import_balance_transactions(conn, &stripe, clock, start, end).await?;
    import_payouts(conn, &stripe, clock, start, end).await?;
    Ok(())
}

async fn complete(ctx: &JobContext, conn: &mut AsyncPgConnection) -> Result<(), JobError> {
    conn.transaction::<_, JobError, _>(async |conn| ctx.complete_in(conn).await)
        .await
}

/// Runs [`ReconcileStripeDay`].
pub async fn run_reconcile_stripe_day(
    ctx: JobContext,
    job: ReconcileStripeDay,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let day = job.tick.date_naive() - Duration::days(1);
    import_day(&mut conn, &ctx.settings, &*ctx.clock, day)
        .await
        .map_err(job_error)?;
    crate::rollups::refresh_ledger_daily(&mut conn, &*ctx.clock)
        .await
        .map_err(job_error)?;
    let summary = crate::reconcile::reconcile_day(&mut conn, &*ctx.clock, day)
        .await
        .map_err(job_error)?;
    tracing::info!(%day, matched = summary.count("matched"), new_exceptions = summary.new_exceptions, "Stripe day reconciled");
    complete(&ctx, &mut conn).await
}

/// Runs [`BuildMonthlyBordereau`].
pub async fn run_build_monthly_bordereau(
    ctx: JobContext,
    job: BuildMonthlyBordereau,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let month = Month::of(job.tick.date_naive() - Duration::days(1));
    crate::rollups::refresh_ledger_daily(&mut conn, &*ctx.clock)
        .await
        .map_err(job_error)?;
    let b = crate::reports::bordereau(&mut conn, &*ctx.clock, month)
        .await
        .map_err(job_error)?;
    let ledger = crate::reports::bordereau_totals(&mut conn, &*ctx.clock, month)
        .await
        .map_err(job_error)?;
    if ledger != b.totals {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "bordereau {month}: line totals {:?} differ from the ledger's {:?}",
            b.totals,
            ledger
        )));
    }
    tracing::info!(%month, lines = b.lines.len(), "bordereau built; totals tie to the ledger");
    complete(&ctx, &mut conn).await
}

#[derive(QueryableByName)]
struct Recipient {
    #[diesel(sql_type = Text)]
    owner_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    minutes: i64,
}

/// Emails the statement of the week starting `week_start` to every driver whose wallet moved in
/// it and who gave an email address. Returns how many notifications were recorded (new or not).
pub async fn send_weekly_statements(
    conn: &mut AsyncPgConnection,
    settings: &Settings,
    week_start: NaiveDate,
) -> Result<usize, FinanceError> {
    let week_start = crate::statements::week_of(week_start);
    let from = crate::period::day_start(week_start);
    let to = from + Duration::days(7);
    let recipients: Vec<Recipient> = diesel::sql_query(
        "SELECT a.owner_id, d.email, \
                (SELECT count(*) FROM cover_sessions s WHERE s.driver_id = d.id \
                    AND s.charged_at >= $1 AND s.charged_at < $2) AS sessions, \
                (SELECT coalesce(sum(s.minutes), 0)::bigint FROM cover_sessions s WHERE s.driver_id = d.id \
                    AND s.charged_at >= $1 AND s.charged_at < $2) AS minutes \
           FROM ledger_accounts a \
           JOIN drivers d ON a.owner_id ~ '^drv_[0-9a-f]{32}$' AND d.id = substr(a.owner_id, 5)::uuid \
          WHERE a.kind = 'driver_wallet' AND d.deleted_at IS NULL \
            AND EXISTS (SELECT 1 FROM ledger_postings p WHERE p.account_id = a.id \
                         AND p.created_at >= $1 AND p.created_at < $2)",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
    .await?;
    let mut sent = 0;
    for r in recipients {
        let Some(email) = r.email else { continue };
        let st = crate::statements::weekly_statement(conn, &r.owner_id, week_start).await?;
        let total = shared::Money::gbp(-st.charges - st.refunds_and_other.min(0));
        let link = format!(
            "{}/statements/{week_start}.pdf",
            settings.http.public_url.trim_end_matches('/')
        );
        let driver_uuid = r
            .owner_id
            .strip_prefix("drv_")
            .and_then(|h| uuid::Uuid::parse_str(h).ok());
        notifications::enqueue_notification(
            conn,
            notifications::NewNotification {
                cause: format!("weekly_statement:{}:{week_start}", r.owner_id),
                channel: notifications::Channel::Email,
                template: notifications::Template::WeeklyStatement,
                recipient: email,
                driver_id: driver_uuid,
                vars: notifications::vars([
                    (
                        "week",
                        format!("week of {}", week_start.format("%-d %B %Y")),
                    ),
                    ("sessions", r.sessions.to_string()),
                    ("minutes", r.minutes.to_string()),
                    ("total", total.to_string()),
                    ("link", link),
                ]),
            },
        )
        .await
        .map_err(|e| FinanceError::Internal(anyhow::anyhow!("statement email: {e}")))?;
        sent += 1;
    }
    Ok(sent)
}

/// Runs [`SendWeeklyStatements`]: the UK week that ended at the tick's midnight (Monday).
pub async fn run_send_weekly_statements(
    ctx: JobContext,
    job: SendWeeklyStatements,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let week = crate::statements::week_of(job.tick.date_naive() - Duration::days(7));
    let n = send_weekly_statements(&mut conn, &ctx.settings, week)
        .await
        .map_err(job_error)?;
    tracing::info!(%week, statements = n, "weekly statements sent");
    complete(&ctx, &mut conn).await
}
