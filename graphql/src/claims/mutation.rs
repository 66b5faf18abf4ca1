//! Claims mutations: reporting and withdrawing claims and disputing charges (drivers); moving
//! claims along, reserves, settlement and dispute resolution (ops).
//!
//! Amounts in inputs are integer minor units (pence) of the claim's or charge's currency.

use super::{ChargeDispute, Claim, ClaimStatus, DisputeReason, user_error, user_errors};
use crate::errors::UserError;
use crate::guard;
use crate::relay::parse_global_id;
use accounts::{Role, VehicleId};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use claims::{ClaimId, ClaimPhotoId, DisputeId};
use cover::CoverSessionId;

/// Input of `reportClaim`.
#[derive(InputObject)]
pub struct ReportClaimInput {
    /// When it happened (not in the future).
    pub occurred_at: DateTime<Utc>,
    /// Where it happened (1 to 300 characters).
    pub location: String,
    /// What happened (1 to 4000 characters).
    pub description: String,
    /// The vehicle involved: one of the driver's.
    pub vehicle_id: ID,
    /// Whether another party was involved.
    pub third_party_involved: bool,
    /// Whether anyone was hurt.
    pub injuries: bool,
    /// Photos uploaded beforehand with `POST /claims/photos` (at most 10).
    #[graphql(default)]
    pub photo_ids: Vec<ID>,
    /// A key the app makes once per claim the driver reports (1 to 200 characters): sending the
    /// same report again (after a timeout) returns the same claim.
    pub idempotency_key: String,
}

/// Result of `reportClaim`.
#[derive(SimpleObject, Default)]
pub struct ReportClaimPayload {
    /// The claim, with its reference and the cover found at the time of loss.
    pub claim: Option<Claim>,
    /// Whether this repeated an earlier report with the same key.
    pub replayed: bool,
    /// `LOSS_TIME_IN_FUTURE`, `LOSS_TIME_TOO_OLD` (`occurredAt`), `VEHICLE_NOT_FOUND`
    /// (`vehicleId`), `INVALID_LOCATION`, `INVALID_DESCRIPTION`, `PHOTO_NOT_FOUND`,
    /// `PHOTO_ALREADY_ATTACHED`, `TOO_MANY_PHOTOS` (`photoIds`), `INVALID_IDEMPOTENCY_KEY`,
    /// `IDEMPOTENCY_KEY_REUSED` (`idempotencyKey`).
    pub user_errors: Vec<UserError>,
}

/// Input of `withdrawClaim`.
#[derive(InputObject)]
pub struct WithdrawClaimInput {
    /// The claim's global id.
    pub claim_id: ID,
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// Input of `transitionClaim`.
#[derive(InputObject)]
pub struct TransitionClaimInput {
    /// The claim's global id.
    pub claim_id: ID,
    /// The status to move to: `ACKNOWLEDGED`, `UNDER_REVIEW` or `DECLINED` (settle with
    /// `settleClaim`; only the driver withdraws).
    pub status: ClaimStatus,
    /// Why (1 to 500 characters); kept in the claim's history.
    pub reason: String,
}

/// Input of `setClaimReserve`.
#[derive(InputObject)]
pub struct SetClaimReserveInput {
    /// The claim's global id.
    pub claim_id: ID,
    /// What the claim is expected to cost, in minor units (0 or more).
    pub amount: i32,
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// Input of `settleClaim`.
#[derive(InputObject)]
pub struct SettleClaimInput {
    /// The claim's global id (under review).
    pub claim_id: ID,
    /// What was paid, in minor units (0 or more).
    pub paid_amount: i32,
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// Result of the claim mutations.
#[derive(SimpleObject, Default)]
pub struct ClaimPayload {
    /// The claim as it now is.
    pub claim: Option<Claim>,
    /// `CLAIM_NOT_FOUND` (`claimId`), `INVALID_TRANSITION` (`status`), `CLAIM_CLOSED`,
    /// `INVALID_AMOUNT` (`amount`), `INVALID_REASON` (`reason`).
    pub user_errors: Vec<UserError>,
}

/// Input of `disputeCharge`.
#[derive(InputObject)]
pub struct DisputeChargeInput {
    /// The charged cover session's global id.
    pub session_id: ID,
    /// Why the charge is wrong.
    pub reason: DisputeReason,
    /// In the driver's words (up to 1000 characters; required for `OTHER`).
    pub details: Option<String>,
}

/// How ops resolve a dispute.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeResolution {
    /// The charge stands.
    Uphold,
    /// Refund part of the charge to the wallet (`refundAmount`).
    Adjust,
    /// Refund all that is left of the charge to the wallet.
    Refund,
}

/// Input of `resolveDispute`.
#[derive(InputObject)]
pub struct ResolveDisputeInput {
    /// The dispute's global id.
    pub dispute_id: ID,
    /// Uphold, adjust or refund.
    pub resolution: DisputeResolution,
    /// For `ADJUST`: how much to refund, in minor units (more than nothing, less than the
    /// charge).
    pub refund_amount: Option<i32>,
    /// What ops found (1 to 500 characters); told to the driver with the outcome.
    pub note: String,
}

/// Result of `disputeCharge` and `resolveDispute`.
#[derive(SimpleObject, Default)]
pub struct DisputePayload {
    /// The dispute as it now is.
    pub dispute: Option<ChargeDispute>,
    /// `SESSION_NOT_FOUND`, `SESSION_NOT_CHARGED`, `ALREADY_DISPUTED` (`sessionId`),
    /// `INVALID_DISPUTE_DETAILS` (`details`), `DISPUTE_NOT_FOUND`, `DISPUTE_ALREADY_RESOLVED`,
    /// `NOTHING_TO_REFUND` (`disputeId`), `INVALID_ADJUSTMENT` (`refundAmount`),
    /// `INVALID_REASON` (`reason`).
    pub user_errors: Vec<UserError>,
}

fn claim_id(id: &ID) -> Option<ClaimId> {
    parse_global_id(id, "Claim")
}

fn claim_not_found() -> Vec<UserError> {
    user_error("claimId", "CLAIM_NOT_FOUND", "No such claim.")
}

fn claim_result(
    ctx: &Context<'_>,
    result: Result<claims::Claim, claims::ClaimsError>,
) -> async_graphql::Result<ClaimPayload> {
    match result {
        Ok(c) => Ok(ClaimPayload {
            claim: Some(Claim::new(c, guard::principal(ctx).clone())),
            user_errors: vec![],
        }),
        Err(e) => Ok(ClaimPayload {
            claim: None,
            user_errors: user_errors(ctx, e)?,
        }),
    }
}

fn dispute_result(
    ctx: &Context<'_>,
    result: Result<claims::Dispute, claims::ClaimsError>,
) -> async_graphql::Result<DisputePayload> {
    match result {
        Ok(d) => Ok(DisputePayload {
            dispute: Some(ChargeDispute::new(d, guard::principal(ctx).clone())),
            user_errors: vec![],
        }),
        Err(e) => Ok(DisputePayload {
            dispute: None,
            user_errors: user_errors(ctx, e)?,
        }),
    }
}

/// The claims mutations.
#[derive(Default)]
pub struct ClaimsMutation;

#[Object]
impl ClaimsMutation {
    /// Reports a claim (first notice of loss) for one of the driver's vehicles. The claim is tied
    /// to the cover session active at `occurredAt` for that vehicle (gap rule and tail cover
    /// included), or flagged "no cover at time of loss" with the nearest session. The driver
    /// gets a text with the claim reference. Drivers only.
    async fn report_claim(
        &self,
        ctx: &Context<'_>,
        input: ReportClaimInput,
    ) -> async_graphql::Result<ReportClaimPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(vehicle_id) = parse_global_id::<VehicleId>(&input.vehicle_id, "Vehicle") else {
            return Ok(ReportClaimPayload {
                user_errors: user_error(
                    "vehicleId",
                    "VEHICLE_NOT_FOUND",
                    "No such vehicle on your account.",
                ),
                ..Default::default()
            });
        };
        let mut photo_ids = Vec::with_capacity(input.photo_ids.len());
        for id in &input.photo_ids {
            match parse_global_id::<ClaimPhotoId>(id, "ClaimPhoto") {
                Some(p) => photo_ids.push(p),
                None => {
                    return Ok(ReportClaimPayload {
                        user_errors: user_error("photoIds", "PHOTO_NOT_FOUND", "No such photo."),
                        ..Default::default()
                    });
                }
            }
        }
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::report_claim(
            &mut conn,
            core.clock.as_ref(),
            driver.driver_id,
            claims::ReportClaim {
                occurred_at: input.occurred_at,
                location: input.location,
                description: input.description,
                vehicle_id,
                third_party_involved: input.third_party_involved,
                injuries: input.injuries,
                photo_ids,
                idempotency_key: input.idempotency_key,
            },
        )
        .await;
        match result {
            Ok(r) => Ok(ReportClaimPayload {
                claim: Some(Claim::new(r.claim, guard::principal(ctx).clone())),
                replayed: r.replayed,
                user_errors: vec![],
            }),
            Err(e) => Ok(ReportClaimPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Withdraws one of the driver's open claims. Drivers only.
    async fn withdraw_claim(
        &self,
        ctx: &Context<'_>,
        input: WithdrawClaimInput,
    ) -> async_graphql::Result<ClaimPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) = claim_id(&input.claim_id) else {
            return Ok(ClaimPayload {
                claim: None,
                user_errors: claim_not_found(),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::withdraw_claim(
            &mut conn,
            core.clock.as_ref(),
            driver.driver_id,
            id,
            &input.reason,
        )
        .await;
        claim_result(ctx, result)
    }

    /// Disputes the charge of one of the driver's charged sessions. Drivers only.
    async fn dispute_charge(
        &self,
        ctx: &Context<'_>,
        input: DisputeChargeInput,
    ) -> async_graphql::Result<DisputePayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(session_id) = parse_global_id::<CoverSessionId>(&input.session_id, "CoverSession")
        else {
            return Ok(DisputePayload {
                dispute: None,
                user_errors: user_error("sessionId", "SESSION_NOT_FOUND", "No such cover session."),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::dispute_charge(
            &mut conn,
            core.clock.as_ref(),
            driver.driver_id,
            claims::DisputeCharge {
                session_id,
                reason: input.reason.into(),
                details: input.details,
            },
        )
        .await;
        dispute_result(ctx, result)
    }

    /// Moves a claim along (ops): to `ACKNOWLEDGED`, `UNDER_REVIEW` or `DECLINED`, with a reason.
    /// The driver is told by text.
    async fn transition_claim(
        &self,
        ctx: &Context<'_>,
        input: TransitionClaimInput,
    ) -> async_graphql::Result<ClaimPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = claim_id(&input.claim_id) else {
            return Ok(ClaimPayload {
                claim: None,
                user_errors: claim_not_found(),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::transition_claim(
            &mut conn,
            core.clock.as_ref(),
            staff.staff_id,
            id,
            input.status.into(),
            &input.reason,
        )
        .await;
        claim_result(ctx, result)
    }

    /// Sets what a claim is expected to cost (ops).
    async fn set_claim_reserve(
        &self,
        ctx: &Context<'_>,
        input: SetClaimReserveInput,
    ) -> async_graphql::Result<ClaimPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = claim_id(&input.claim_id) else {
            return Ok(ClaimPayload {
                claim: None,
                user_errors: claim_not_found(),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::set_claim_reserve(
            &mut conn,
            core.clock.as_ref(),
            staff.staff_id,
            id,
            i64::from(input.amount),
            &input.reason,
        )
        .await;
        claim_result(ctx, result)
    }

    /// Settles a claim under review with the amount paid (ops). The driver is told by text.
    async fn settle_claim(
        &self,
        ctx: &Context<'_>,
        input: SettleClaimInput,
    ) -> async_graphql::Result<ClaimPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = claim_id(&input.claim_id) else {
            return Ok(ClaimPayload {
                claim: None,
                user_errors: claim_not_found(),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = claims::settle_claim(
            &mut conn,
            core.clock.as_ref(),
            staff.staff_id,
            id,
            i64::from(input.paid_amount),
            &input.reason,
        )
        .await;
        claim_result(ctx, result)
    }

    /// Resolves an open charge dispute (ops): uphold the charge, adjust it (refund part) or
    /// refund it, back to the driver's wallet. The driver is told the outcome by text.
    async fn resolve_dispute(
        &self,
        ctx: &Context<'_>,
        input: ResolveDisputeInput,
    ) -> async_graphql::Result<DisputePayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_global_id::<DisputeId>(&input.dispute_id, "ChargeDispute") else {
            return Ok(DisputePayload {
                dispute: None,
                user_errors: user_error("disputeId", "DISPUTE_NOT_FOUND", "No such dispute."),
            });
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        let resolution = match input.resolution {
            DisputeResolution::Uphold => claims::Resolution::Uphold,
            DisputeResolution::Refund => claims::Resolution::Refund,
            DisputeResolution::Adjust => {
                let Some(amount) = input.refund_amount else {
                    return Ok(DisputePayload {
                        dispute: None,
                        user_errors: user_error(
                            "refundAmount",
                            "INVALID_ADJUSTMENT",
                            "An adjustment needs the amount to refund.",
                        ),
                    });
                };
                let dispute = match claims::get_dispute(&mut conn, id).await {
                    Ok(d) => d,
                    Err(e) => {
                        return Ok(DisputePayload {
                            dispute: None,
                            user_errors: user_errors(ctx, e)?,
                        });
                    }
                };
                claims::Resolution::Adjust {
                    refund: shared::Money {
                        minor: i64::from(amount),
                        currency: dispute.charge.currency,
                    },
                }
            }
        };
        let env = crate::payments::payments_env(ctx)?;
        let result =
            claims::resolve_dispute(&mut conn, &env, staff.staff_id, id, resolution, &input.note)
                .await;
        dispute_result(ctx, result)
    }
}
