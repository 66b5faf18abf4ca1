//! The cover jobs as `shiftcover work` runs them: composed with payments, which the cover crate
//! does not know.

use cover::jobs::{CloseDueSessions, run_close_due_sessions};
use payments::jobs::ChargeSession;
use shared::jobs::{JobContext, JobError};

/// Ends the sessions past their maximum length or a partner's gap rule, queues each one's charge
/// in the same transaction (a session is never ended without its charge on the way), then
/// publishes the `Ended` events to the drivers' live status (best effort, after commit).
pub async fn close_due_sessions_and_charge(
    ctx: JobContext,
    job: CloseDueSessions,
) -> Result<(), JobError> {
    let settings = ctx.settings.clone();
    let events = run_close_due_sessions(ctx, job, |conn, closed| {
        Box::pin(async move {
            for session in &closed.sessions {
                shared::outbox::enqueue(
                    conn,
                    &ChargeSession {
                        session_id: session.id,
                    },
                )
                .await?;
            }
            Ok(())
        })
    })
    .await?;
    if events.is_empty() {
        return Ok(());
    }
    match shared::redis_conn::connect(&settings.redis).await {
        Ok(mut redis) => {
            cover::publish_cover_events(&mut redis, &settings.redis.key_prefix, &events).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cover events of closed sessions not published: Redis unavailable")
        }
    }
    Ok(())
}
