//! Live cover status for the driver's app and partner dashboards, over Redis pub/sub.
//!
//! Functions that change a session or an enrolment return the [`CoverEvent`]s the change causes
//! instead of publishing them: an event must only go out once the change is committed, and only
//! the caller knows when that is (it may hold an outer transaction). The API and the workers call
//! [`publish_cover_event`] for each event after their commit. Pub/sub is best effort: a missed
//! event only delays what a screen shows, because the database stays the source of truth.

use crate::ids::CoverSessionId;
use accounts::DriverId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened to a driver's cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverEventKind {
    /// A session started.
    Started,
    /// A session will end soon (maximum length or a partner's gap rule).
    EndingSoon,
    /// A session ended.
    Ended,
    /// The driver's enrolment was suspended: no new session can start.
    Suspended,
}

/// One change of a driver's cover, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverEvent {
    /// Whose cover.
    pub driver_id: DriverId,
    /// The session concerned; `None` for an enrolment change with no open session.
    pub session_id: Option<CoverSessionId>,
    /// What happened.
    pub kind: CoverEventKind,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The pub/sub channel of a driver's cover events: `<prefix>:cover:driver:<driver id>`.
pub fn cover_channel(prefix: &str, driver_id: DriverId) -> String {
    shared::redis_conn::key(prefix, ["cover", "driver", &driver_id.to_string()])
}

/// Publishes one event (JSON) on its driver's channel; returns how many subscribers got it.
/// Call only after the change that caused the event has committed.
pub async fn publish_cover_event<C>(
    conn: &mut C,
    prefix: &str,
    event: &CoverEvent,
) -> anyhow::Result<i64>
where
    C: redis::aio::ConnectionLike + Send,
{
    let payload = serde_json::to_string(event)?;
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(cover_channel(prefix, event.driver_id))
        .arg(payload)
        .query_async(conn)
        .await?;
    Ok(receivers)
}

/// Publishes events in order, logging (not returning) failures: live status is best effort and
/// must never fail the request whose change is already committed.
pub async fn publish_cover_events<C>(conn: &mut C, prefix: &str, events: &[CoverEvent])
where
    C: redis::aio::ConnectionLike + Send,
{
    for event in events {
        if let Err(e) = publish_cover_event(conn, prefix, event).await {
            tracing::warn!(driver_id = %event.driver_id, kind = ?event.kind, error = %e, "cover event not published");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_prefixed_ids_and_snake_case_kinds() {
        let driver_id = DriverId::new();
        let session_id = CoverSessionId::new();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let e = CoverEvent {
            driver_id,
            session_id: Some(session_id),
            kind: CoverEventKind::EndingSoon,
            at,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "ending_soon");
        assert_eq!(json["driver_id"], driver_id.to_string());
        assert_eq!(json["session_id"], session_id.to_string());
        assert_eq!(serde_json::from_value::<CoverEvent>(json).unwrap(), e);
        assert_eq!(
            cover_channel("sc", driver_id),
            format!("sc:cover:driver:{driver_id}")
        );
    }
}
