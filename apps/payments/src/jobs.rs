//! The payments jobs and their handlers; `workers` registers them.
//!
//! - [`ChargeAutoTopUp`] charges one automatic top-up off-session;
//! - [`ApplyStripeEvent`] applies one stored Stripe webhook event;
//! - [`ChargeSession`] takes one ended session's charge from the wallet;
//! - [`EnforceOverdraft`] (a cron tick) ends running sessions at the overdraft limit;
//! - [`ScheduleDueAutoTopUps`] (a cron tick) starts the automatic top-ups nothing else caught;
//! - [`SweepPaymentsLimbo`] (a cron tick) finishes refunds, charges and top-ups left unfinished.
//!
//! Each payload carries ids only; the handler re-reads the rows. Stripe calls happen outside
//! database transactions with idempotency keys from our rows, and database effects commit
//! together with the job's completion where they can, so a job run twice has its effect once.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use std::sync::{Mutex, OnceLock};

pub use crate::auto_top_up::ChargeAutoTopUp;
pub use crate::limbo::SweepPaymentsLimbo;
pub use crate::overdraft::EnforceOverdraft;
pub use crate::webhooks::ApplyStripeEvent;

/// Every payments job type, for the workers' registration.
pub const JOB_TYPES: [&str; 6] = [
    ChargeAutoTopUp::TYPE,
    ApplyStripeEvent::TYPE,
    ChargeSession::TYPE,
    EnforceOverdraft::TYPE,
    ScheduleDueAutoTopUps::TYPE,
    SweepPaymentsLimbo::TYPE,
];

/// The job that schedules the automatic top-ups due for every driver who enabled them (one per
/// cron tick).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleDueAutoTopUps {
    /// The scheduler tick that asked for the run (the job's identity).
    pub tick: chrono::DateTime<chrono::Utc>,
}

impl ScheduleDueAutoTopUps {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: chrono::DateTime<chrono::Utc>) -> Self {
        Self { tick }
    }
}

impl Job for ScheduleDueAutoTopUps {
    const TYPE: &'static str = "ScheduleDueAutoTopUps";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("auto_top_up_sweep:{}", self.tick.timestamp())
    }
}

/// The job that charges one ended cover session to the wallet: defined by the cover app, which
/// enqueues it in the transaction of every ending; this app runs it.
pub use cover::jobs::ChargeSession;

/// One Stripe client per process (per settings), built on first use.
fn env_for(ctx: &JobContext) -> Result<PaymentsEnv, JobError> {
    static CACHE: OnceLock<Mutex<Option<(String, PaymentsEnv)>>> = OnceLock::new();
    let key = format!(
        "{}|{}|{}",
        ctx.settings.stripe.base_url,
        ctx.settings.stripe.secret_key.expose(),
        ctx.settings.http.public_url
    );
    let cache = CACHE.get_or_init(|| Mutex::new(None));
    let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((k, env)) = cached.as_ref()
        && *k == key
    {
        let mut env = env.clone();
        env.clock = ctx.clock.clone();
        return Ok(env);
    }
    let env = PaymentsEnv::from_settings(&ctx.settings, ctx.clock.clone())
        .map_err(JobError::Permanent)?;
    *cached = Some((key, env.clone()));
    Ok(env)
}

fn job_error(e: PaymentsError) -> JobError {
    if matches!(e, PaymentsError::ClaimLost) {
        JobError::ClaimLost
    } else if e.is_retryable() {
        JobError::Retry(anyhow::Error::new(e))
    } else {
        JobError::Permanent(anyhow::Error::new(e))
    }
}

impl From<PaymentsError> for JobError {
    fn from(e: PaymentsError) -> Self {
        job_error(e)
    }
}

async fn complete(ctx: &JobContext, conn: &mut AsyncPgConnection) -> Result<(), JobError> {
    conn.transaction::<_, JobError, _>(async |conn| ctx.complete_in(conn).await)
        .await
}

/// Runs [`ChargeAutoTopUp`]: charges the top-up off-session (nothing when it is no longer
/// `created`; nothing when, before Stripe was first asked, it is no longer needed). Stripe unavailable →
/// retried with the same idempotency key.
pub async fn run_charge_auto_top_up(ctx: JobContext, job: ChargeAutoTopUp) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    crate::auto_top_up::charge_auto_top_up(&mut conn, &env, job.top_up_id)
        .await
        .map_err(job_error)?;
    complete(&ctx, &mut conn).await
}

/// Runs [`ApplyStripeEvent`]: applies the stored event and completes the job in the transaction
/// that marks the event.
pub async fn run_apply_stripe_event(
    ctx: JobContext,
    job: ApplyStripeEvent,
) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    crate::webhooks::apply_stripe_event(&mut conn, &env, job.event_row_id, Some(&ctx))
        .await
        .map(|_| ())
        .map_err(job_error)
}

/// Runs [`ChargeSession`]: takes the session's charge (idempotent) and completes the job in the
/// same transaction.
pub async fn run_charge_session(ctx: JobContext, job: ChargeSession) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    let (ctx_ref, env_ref) = (&ctx, &env);
    conn.transaction::<_, JobError, _>(async |conn| {
        crate::wallet::charge_session(conn, env_ref, job.session_id)
            .await
            .map_err(job_error)?;
        ctx_ref.complete_in(conn).await
    })
    .await
}

/// Runs [`EnforceOverdraft`]: reviews every running session against its wallet (each ending
/// commits on its own, with its charge job), completes the job, then publishes the cover events
/// to the drivers' live status (best effort).
pub async fn run_enforce_overdraft(
    ctx: JobContext,
    _job: EnforceOverdraft,
) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    let review = crate::overdraft::enforce_overdraft(&mut conn, &env)
        .await
        .map_err(job_error)?;
    complete(&ctx, &mut conn).await?;
    if !review.ended.is_empty() || !review.warned.is_empty() {
        tracing::info!(
            warned = review.warned.len(),
            ended = review.ended.len(),
            topped_up = review.topped_up,
            "overdraft review"
        );
    }
    if !review.events.is_empty() {
        match shared::redis_conn::connect(&ctx.settings.redis).await {
            Ok(mut redis) => {
                cover::publish_cover_events(
                    &mut redis,
                    &ctx.settings.redis.key_prefix,
                    &review.events,
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cover events of the overdraft review not published")
            }
        }
    }
    Ok(())
}

/// Runs [`ScheduleDueAutoTopUps`]: schedules the automatic top-ups that are due.
pub async fn run_schedule_due_auto_top_ups(
    ctx: JobContext,
    _job: ScheduleDueAutoTopUps,
) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    let scheduled = crate::auto_top_up::schedule_due_auto_top_ups(&mut conn, &env)
        .await
        .map_err(job_error)?;
    complete(&ctx, &mut conn).await?;
    if scheduled > 0 {
        tracing::info!(scheduled, "automatic top-ups scheduled by the sweep");
    }
    Ok(())
}

/// Runs [`SweepPaymentsLimbo`]: finishes what was left unfinished (each item on its own), then
/// completes the job.
pub async fn run_sweep_payments_limbo(
    ctx: JobContext,
    _job: SweepPaymentsLimbo,
) -> Result<(), JobError> {
    let env = env_for(&ctx)?;
    let mut conn = ctx.pool.get().await?;
    let sweep = crate::limbo::sweep_limbo(&mut conn, &env)
        .await
        .map_err(job_error)?;
    complete(&ctx, &mut conn).await?;
    tracing::info!(
        refunds = sweep.refunds_retried.len(),
        sessions = sweep.sessions_charged.len(),
        top_ups = sweep.top_ups_settled.len(),
        failures = sweep.failures.len(),
        "payments limbo swept"
    );
    Ok(())
}
