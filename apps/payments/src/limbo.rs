//! Nothing left in limbo: money movements that started and never finished are finished or
//! flagged.
//!
//! [`sweep_limbo`] (the [`SweepPaymentsLimbo`] job, every ten minutes) looks for:
//! - top-up refunds still `pending` [`STALE_AFTER_MINUTES`] after they were made (Stripe was
//!   unreachable, or its answer never came): asked again ([`crate::retry_refund`], same
//!   idempotency key);
//! - ended sessions whose charge was not taken [`STALE_AFTER_MINUTES`] after they ended (their
//!   job died): charged ([`crate::charge_session`], once whatever happens);
//! - top-ups still `created` or `requires_action` [`crate::top_ups::IDEMPOTENCY_WINDOW_HOURS`]
//!   after they were made: one never sent to Stripe is cancelled; one Stripe knows is re-read
//!   and, when still waiting for a driver who never came, cancelled at Stripe; one sent whose
//!   PaymentIntent we never stored is looked up by its metadata. Anything that cannot be settled
//!   this way is left for people and listed by [`unresolved`] (the ledger check prints it).
//!
//! Each item is finished on its own; one failure is logged and the sweep goes on.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::{RefundId, TopUpId};
use crate::schema::{refunds, top_ups};
use crate::top_ups::{IDEMPOTENCY_WINDOW_HOURS, TopUpStatus};
use chrono::{DateTime, Duration, Utc};
use cover::CoverSessionId;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::outbox::Job;

/// Minutes after which a pending refund or an uncharged ended session is taken up by the sweep.
pub const STALE_AFTER_MINUTES: i64 = 10;

/// Items of each kind one sweep takes at most; more wait for the next.
pub const SWEEP_BATCH: i64 = 200;

/// The job that sweeps payments left unfinished (one per cron tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepPaymentsLimbo {
    /// The scheduler tick that asked for the run (the job's identity).
    pub tick: DateTime<Utc>,
}

impl SweepPaymentsLimbo {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for SweepPaymentsLimbo {
    const TYPE: &'static str = "SweepPaymentsLimbo";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("payments_limbo_sweep:{}", self.tick.timestamp())
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct LimboSweep {
    /// Refunds asked for again.
    pub refunds_retried: Vec<RefundId>,
    /// Sessions charged.
    pub sessions_charged: Vec<CoverSessionId>,
    /// Top-ups settled (succeeded, failed or cancelled).
    pub top_ups_settled: Vec<TopUpId>,
    /// Items that failed this time, in words.
    pub failures: Vec<String>,
}

/// Finishes what was left unfinished (see the module documentation).
pub async fn sweep_limbo(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
) -> Result<LimboSweep, PaymentsError> {
    let now = env.clock.now();
    let stale = now - Duration::minutes(STALE_AFTER_MINUTES);
    let mut sweep = LimboSweep::default();

    let pending: Vec<RefundId> = refunds::table
        .filter(refunds::status.eq("pending"))
        .filter(refunds::top_up_id.is_not_null())
        .filter(refunds::created_at.lt(stale))
        .order(refunds::created_at.asc())
        .limit(SWEEP_BATCH)
        .select(refunds::id)
        .load(conn)
        .await?;
    for id in pending {
        match crate::refunds::retry_refund(conn, env, id).await {
            Ok(_) => sweep.refunds_retried.push(id),
            Err(e) => sweep.failures.push(format!("refund {id}: {e}")),
        }
    }

    let uncharged = cover::sessions_awaiting_charge(conn, stale, SWEEP_BATCH)
        .await
        .map_err(|e| anyhow::anyhow!("reading sessions awaiting their charge: {e}"))?;
    for id in uncharged {
        match crate::wallet::charge_session(conn, env, id).await {
            Ok(_) => sweep.sessions_charged.push(id),
            Err(e) => sweep.failures.push(format!("session {id}: {e}")),
        }
    }

    let old = now - Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
    let waiting: Vec<TopUpId> = top_ups::table
        .filter(top_ups::status.eq_any([
            TopUpStatus::Created.as_str(),
            TopUpStatus::RequiresAction.as_str(),
        ]))
        .filter(top_ups::created_at.lt(old))
        .order(top_ups::created_at.asc())
        .limit(SWEEP_BATCH)
        .select(top_ups::id)
        .load(conn)
        .await?;
    for id in waiting {
        match settle_old_top_up(conn, env, id).await {
            Ok(true) => sweep.top_ups_settled.push(id),
            Ok(false) => {}
            Err(e) => sweep.failures.push(format!("top-up {id}: {e}")),
        }
    }
    if !sweep.failures.is_empty() {
        tracing::warn!(failures = ?sweep.failures, "payments limbo sweep: some items could not be finished");
    }
    Ok(sweep)
}

/// Settles a top-up left waiting past Stripe's idempotency window. Returns whether it reached
/// a final state or a failure.
async fn settle_old_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    id: TopUpId,
) -> Result<bool, PaymentsError> {
    let Some(row) = crate::top_ups::load_row(conn, id).await? else {
        return Ok(false);
    };
    let settled = |t: &crate::TopUp| {
        t.status != TopUpStatus::Created && t.status != TopUpStatus::RequiresAction
    };
    if row.stripe_requested_at.is_none() && row.payment_intent_id.is_none() {
        let t = crate::top_ups::cancel_unsent(
            conn,
            env,
            id,
            "expired",
            "Never sent to the card issuer; given up after a day",
        )
        .await?;
        return Ok(settled(&t));
    }
    let intent = match &row.payment_intent_id {
        Some(pi) => Some(env.stripe.retrieve_payment_intent(pi).await?),
        None => {
            let customer = crate::cards::stripe_customer_id(conn, row.driver_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("driver {} has no customer", row.driver_id))?;
            let since = row.stripe_requested_at.unwrap_or(row.created_at) - Duration::hours(1);
            env.stripe
                .find_payment_intent(&customer, since.timestamp(), "top_up_id", &id.to_string())
                .await?
        }
    };
    let Some(intent) = intent else {
        // Asked, and Stripe holds nothing for it: no PaymentIntent can appear any more.
        let t = crate::top_ups::give_up_unanswered(conn, env, id).await?;
        return Ok(settled(&t));
    };
    let waiting_for_driver = matches!(
        intent.status.as_str(),
        "requires_action" | "requires_payment_method" | "requires_confirmation"
    );
    let intent = if waiting_for_driver {
        env.stripe
            .cancel_payment_intent(&intent.id, &format!("expire:{id}"))
            .await?
    } else {
        intent
    };
    let t = crate::top_ups::apply_intent(conn, env, id, &intent).await?;
    Ok(settled(&t))
}

/// What is still unfinished now, in words, for people (the ledger check prints it): ended
/// sessions not charged within an hour, refunds pending for more than an hour, top-ups waiting
/// for longer than Stripe's idempotency window.
pub async fn unresolved(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<String>, PaymentsError> {
    let hour_ago = now - Duration::hours(1);
    let mut out = Vec::new();
    for id in cover::sessions_awaiting_charge(conn, hour_ago, SWEEP_BATCH)
        .await
        .map_err(|e| anyhow::anyhow!("reading sessions awaiting their charge: {e}"))?
    {
        out.push(format!(
            "session {id} ended more than an hour ago and is not charged"
        ));
    }
    let pending: Vec<(RefundId, DateTime<Utc>)> = refunds::table
        .filter(refunds::status.eq("pending"))
        .filter(refunds::created_at.lt(hour_ago))
        .order(refunds::created_at.asc())
        .limit(SWEEP_BATCH)
        .select((refunds::id, refunds::created_at))
        .load(conn)
        .await?;
    for (id, at) in pending {
        out.push(format!("refund {id} pending since {at}"));
    }
    let old = now - Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
    let waiting: Vec<(TopUpId, String, DateTime<Utc>)> = top_ups::table
        .filter(top_ups::status.eq_any([
            TopUpStatus::Created.as_str(),
            TopUpStatus::RequiresAction.as_str(),
        ]))
        .filter(top_ups::created_at.lt(old))
        .order(top_ups::created_at.asc())
        .limit(SWEEP_BATCH)
        .select((top_ups::id, top_ups::status, top_ups::created_at))
        .load(conn)
        .await?;
    for (id, status, at) in waiting {
        out.push(format!("top-up {id} still {status} since {at}"));
    }
    Ok(out)
}
