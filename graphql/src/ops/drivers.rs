//! Ops actions on a driver's account: suspend and reactivate an enrolment, sign the driver out
//! of every device. Each needs the ops role and a reason, and is audited with the staff user.

use crate::accounts::{conn, core};
use crate::cover::enrolments::Enrolment;
use crate::cover::{bad_id, cover_user_errors, publish_events, user_error};
use crate::errors::{UserError, internal};
use crate::guard;
use crate::relay::parse_global_id;
use accounts::{Actor, DriverId, Role};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use cover::EnrolmentId;
use diesel_async::AsyncConnection;
use shared::audit::{self, ActorType, AuditEntry};

/// Suspend or reactivate an enrolment.
#[derive(InputObject)]
pub struct ChangeEnrolmentStatusInput {
    /// The enrolment.
    pub enrolment_id: ID,
    /// Why (1 to 500 characters): kept in the enrolment's history and the audit log.
    pub reason: String,
}

/// Result of `suspendEnrolment` / `reactivateEnrolment`.
#[derive(SimpleObject, Default)]
pub struct ChangeEnrolmentStatusPayload {
    /// The enrolment as it is now.
    pub enrolment: Option<Enrolment>,
    /// Whether this call changed it (false when it already was in that state).
    pub changed: bool,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

/// Sign a driver out everywhere.
#[derive(InputObject)]
pub struct SignDriverOutEverywhereInput {
    /// The driver.
    pub driver_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: String,
}

/// Result of `signDriverOutEverywhere`.
#[derive(SimpleObject, Default)]
pub struct SignDriverOutEverywherePayload {
    /// How many live sessions were ended.
    pub sessions_ended: i32,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

fn clean_reason(reason: &str) -> Option<&str> {
    let r = reason.trim();
    (1..=500).contains(&r.chars().count()).then_some(r)
}

/// Ops mutations on drivers.
#[derive(Default)]
pub struct DriverOpsMutation;

impl DriverOpsMutation {
    async fn change_status(
        ctx: &Context<'_>,
        input: ChangeEnrolmentStatusInput,
        suspend: bool,
    ) -> async_graphql::Result<ChangeEnrolmentStatusPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_global_id::<EnrolmentId>(&input.enrolment_id, "Enrolment") else {
            return Ok(ChangeEnrolmentStatusPayload {
                user_errors: bad_id("enrolmentId", "ENROLMENT_NOT_FOUND"),
                ..Default::default()
            });
        };
        let core = core(ctx)?;
        let clock = core.clock.as_ref();
        let mut conn = conn(ctx).await?;
        let actor = Actor::Staff(staff.staff_id);
        let result = if suspend {
            cover::suspend(&mut conn, clock, id, &input.reason, actor).await
        } else {
            cover::reactivate(&mut conn, clock, id, &input.reason, actor).await
        };
        match result {
            Ok(changed) => {
                publish_events(core, &changed.events).await;
                Ok(ChangeEnrolmentStatusPayload {
                    enrolment: Some(Enrolment::new(
                        changed.enrolment,
                        guard::principal(ctx).clone(),
                    )),
                    changed: changed.changed,
                    user_errors: vec![],
                })
            }
            Err(e) => Ok(ChangeEnrolmentStatusPayload {
                user_errors: cover_user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }
}

#[Object]
impl DriverOpsMutation {
    /// Suspends an active enrolment: no new cover can start on it (a running session keeps
    /// running). Ops only; the reason goes into the enrolment's history.
    async fn suspend_enrolment(
        &self,
        ctx: &Context<'_>,
        input: ChangeEnrolmentStatusInput,
    ) -> async_graphql::Result<ChangeEnrolmentStatusPayload> {
        Self::change_status(ctx, input, true).await
    }

    /// Makes a suspended (or pending) enrolment active again. Ops only.
    async fn reactivate_enrolment(
        &self,
        ctx: &Context<'_>,
        input: ChangeEnrolmentStatusInput,
    ) -> async_graphql::Result<ChangeEnrolmentStatusPayload> {
        Self::change_status(ctx, input, false).await
    }

    /// Ends every live app session of a driver (a lost or stolen phone). Ops only; audited.
    async fn sign_driver_out_everywhere(
        &self,
        ctx: &Context<'_>,
        input: SignDriverOutEverywhereInput,
    ) -> async_graphql::Result<SignDriverOutEverywherePayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(driver_id) = parse_global_id::<DriverId>(&input.driver_id, "Driver") else {
            return Ok(SignDriverOutEverywherePayload {
                user_errors: bad_id("driverId", "NOT_FOUND"),
                ..Default::default()
            });
        };
        let Some(reason) = clean_reason(&input.reason) else {
            return Ok(SignDriverOutEverywherePayload {
                user_errors: user_error(
                    Some("reason"),
                    "INVALID_REASON",
                    "Give a reason of 1 to 500 characters.",
                ),
                ..Default::default()
            });
        };
        let core = core(ctx)?;
        let clock = core.clock.as_ref();
        let mut conn = conn(ctx).await?;
        let result = conn
            .transaction::<_, anyhow::Error, _>(async |conn| {
                if accounts::get_driver(conn, driver_id).await.is_err() {
                    return Ok(None);
                }
                let n = accounts::sign_out_everywhere(conn, clock, driver_id).await?;
                audit::record(
                    conn,
                    &AuditEntry {
                        actor_type: ActorType::Staff,
                        actor_id: Some(staff.staff_id.to_string()),
                        action: "driver.signed_out_everywhere",
                        subject_type: "driver",
                        subject_id: driver_id.to_string(),
                        reason: Some(reason),
                        details: serde_json::json!({ "sessions_ended": n }),
                    },
                )
                .await?;
                Ok(Some(n))
            })
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(match result {
            None => SignDriverOutEverywherePayload {
                user_errors: bad_id("driverId", "NOT_FOUND"),
                ..Default::default()
            },
            Some(n) => SignDriverOutEverywherePayload {
                sessions_ended: i32::try_from(n).unwrap_or(i32::MAX),
                user_errors: vec![],
            },
        })
    }
}
