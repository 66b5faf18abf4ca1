//! Partners mutations (see the module docs of [`super`] for who may call what).

use super::{
    CoverStartsOn, PartnerLink, ShiftEventCover, ShiftEventKind, ShiftEventStatus, WebhookDelivery,
    WebhookEndpoint, WebhookEventType, bad_id, require_delivery_viewer, require_partner_scope,
    user_errors,
};
use crate::accounts::VehicleType;
use crate::errors::UserError;
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::{Actor, PartnerId, Role, Scope};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use partners::{LinkId, WebhookDeliveryId, WebhookEndpointId};

/// Input of `linkDriver`.
#[derive(InputObject)]
pub struct LinkDriverInput {
    /// The code the driver created in the ShiftCover app (e.g. `7K4Q-9XM2`; case, spaces and
    /// dashes do not matter).
    pub link_code: String,
    /// The partner's own id for the driver (1 to 200 characters).
    pub external_driver_id: String,
}

/// Result of `linkDriver` and `unlinkDriver`.
#[derive(SimpleObject, Default)]
pub struct LinkDriverPayload {
    /// The link.
    pub link: Option<PartnerLink>,
    /// `INVALID_LINK_CODE`, `LINK_CODE_EXPIRED`, `ALREADY_LINKED` (`linkCode`);
    /// `INVALID_EXTERNAL_DRIVER_ID`, `EXTERNAL_ID_TAKEN`, `UNKNOWN_DRIVER`, `NOT_LINKED`
    /// (`externalDriverId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `unlinkDriver`.
#[derive(InputObject)]
pub struct UnlinkDriverInput {
    /// The partner's id for the driver.
    pub external_driver_id: String,
}

/// One shift event.
#[derive(InputObject)]
pub struct ShiftEventInput {
    /// The partner's id of the event (1 to 200 characters): sending it again is harmless.
    pub event_id: String,
    /// The partner's id for the driver.
    pub external_driver_id: String,
    /// What happened.
    pub kind: ShiftEventKind,
    /// When it happened (at most 24 hours ago; not in the future).
    pub occurred_at: DateTime<Utc>,
    /// What the driver works with for this shift.
    pub vehicle_type: VehicleType,
    /// The partner's reference of the shift or job, if any.
    pub reference: Option<String>,
}

/// Input of `recordShiftEvents`.
#[derive(InputObject)]
pub struct RecordShiftEventsInput {
    /// Up to 500 events, in any order.
    pub events: Vec<ShiftEventInput>,
}

/// The answer for one event of a batch.
#[derive(SimpleObject, Debug, Clone)]
pub struct ShiftEventResult {
    /// The partner's event id, as sent.
    pub event_id: String,
    /// Accepted, duplicate or rejected.
    pub status: ShiftEventStatus,
    /// Why it was rejected: `INVALID_EVENT_ID`, `INVALID_EXTERNAL_DRIVER_ID`,
    /// `INVALID_REFERENCE`, `EVENT_TOO_OLD`, `EVENT_IN_FUTURE`, `UNKNOWN_DRIVER`, `NOT_LINKED`,
    /// `CONFLICTING_DUPLICATE` (the id was used for an event with other content).
    pub code: Option<String>,
    /// What the event gave for cover; null for a rejected event.
    pub cover: Option<ShiftEventCover>,
    /// The session covering the event's time, when covered.
    pub session_id: Option<ID>,
    /// When that session continues a working period (cover resumed within the gap rule, so one
    /// minimum charge for the period): the session it continues.
    pub continues_session_id: Option<ID>,
    /// Why the driver cannot be covered, when not covered: `NOT_ENROLLED`,
    /// `INSUFFICIENT_FUNDS`, `NO_MATCHING_VEHICLE`, `ENROLMENT_SUSPENDED`, …
    pub not_covered_code: Option<String>,
}

impl From<partners::ShiftEventResult> for ShiftEventResult {
    fn from(r: partners::ShiftEventResult) -> Self {
        let (cover, session_id, continues_session_id, not_covered_code) = match r.cover {
            None => (None, None, None, None),
            Some(partners::EventCover::Covered {
                session_id,
                continues,
            }) => (
                Some(ShiftEventCover::Covered),
                Some(to_global_id("CoverSession", &session_id)),
                continues.map(|c| to_global_id("CoverSession", &c)),
                None,
            ),
            Some(partners::EventCover::NotCovered { code }) => {
                (Some(ShiftEventCover::NotCovered), None, None, Some(code))
            }
            Some(partners::EventCover::Unchanged) => {
                (Some(ShiftEventCover::Unchanged), None, None, None)
            }
        };
        Self {
            event_id: r.event_id,
            status: r.status.into(),
            code: r.code.map(str::to_owned),
            cover,
            session_id,
            continues_session_id,
            not_covered_code,
        }
    }
}

/// Result of `recordShiftEvents`.
#[derive(SimpleObject, Default)]
pub struct RecordShiftEventsPayload {
    /// One answer per event, in the batch's order (empty when the whole batch was refused).
    pub results: Vec<ShiftEventResult>,
    /// Events recorded now.
    pub accepted: i32,
    /// Events recorded before with the same content.
    pub duplicates: i32,
    /// Events refused (each result says why).
    pub rejected: i32,
    /// `BATCH_TOO_LARGE` (`events`): nothing was recorded.
    pub user_errors: Vec<UserError>,
}

/// Input of `registerWebhookEndpoint`.
#[derive(InputObject)]
pub struct RegisterWebhookEndpointInput {
    /// Where to POST deliveries: https (plain http only for test-mode keys), at most 2000
    /// characters, on a host that is and resolves to public internet addresses only.
    pub url: String,
    /// What to send (at least one).
    pub event_types: Vec<WebhookEventType>,
    /// How long to wait for an answer, in milliseconds (100 to 10000; default 5000).
    pub timeout_ms: Option<i32>,
}

/// Result of `registerWebhookEndpoint` and `rotateWebhookSecret`.
#[derive(SimpleObject, Default)]
pub struct WebhookEndpointSecretPayload {
    /// The endpoint.
    pub endpoint: Option<WebhookEndpoint>,
    /// The signing secret (`whsec_…`), shown this once: give it to the receiver.
    pub secret: Option<String>,
    /// `INVALID_URL` (`url`), `URL_NOT_ALLOWED` (`url`: a private, loopback or reserved
    /// address), `TOO_MANY_ENDPOINTS` (`url`: the partner's cap is reached), `INVALID_EVENT_TYPES`
    /// (`eventTypes`), `INVALID_TIMEOUT` (`timeoutMs`), `ENDPOINT_NOT_FOUND` (`endpointId`),
    /// `INVALID_OVERLAP` (`overlapHours`).
    pub user_errors: Vec<UserError>,
}

/// Input of `rotateWebhookSecret`.
#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    /// The endpoint's global id.
    pub endpoint_id: ID,
    /// Hours the old secret keeps signing beside the new one (0 to 168; default 24), so the
    /// receiver can switch without missing a delivery.
    pub overlap_hours: Option<i32>,
}

/// Input of `setWebhookEndpointEnabled`.
#[derive(InputObject)]
pub struct SetWebhookEndpointEnabledInput {
    /// The endpoint's global id.
    pub endpoint_id: ID,
    /// Off: no new deliveries, and pending ones fail at their next attempt. On: deliveries
    /// resume for new events.
    pub enabled: bool,
}

/// Result of `setWebhookEndpointEnabled`.
#[derive(SimpleObject, Default)]
pub struct WebhookEndpointPayload {
    /// The endpoint.
    pub endpoint: Option<WebhookEndpoint>,
    /// `ENDPOINT_NOT_FOUND` (`endpointId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `replayWebhookDelivery`.
#[derive(InputObject)]
pub struct ReplayWebhookDeliveryInput {
    /// The delivery's global id.
    pub delivery_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `replayWebhookDelivery`.
#[derive(SimpleObject, Default)]
pub struct ReplayWebhookDeliveryPayload {
    /// The delivery, pending again.
    pub delivery: Option<WebhookDelivery>,
    /// `DELIVERY_NOT_FOUND` (`deliveryId`).
    pub user_errors: Vec<UserError>,
}

/// Result of `createLinkCode`.
#[derive(SimpleObject, Default)]
pub struct CreateLinkCodePayload {
    /// The code to give the partner (e.g. `7K4Q-9XM2`), shown this once.
    pub code: Option<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// None yet; kept for the shape every payload has.
    pub user_errors: Vec<UserError>,
}

/// Input of `unlinkPartner` and `staffUnlinkPartnerLink`.
#[derive(InputObject)]
pub struct UnlinkPartnerInput {
    /// The link's global id.
    pub link_id: ID,
}

/// Result of `unlinkPartner` and `staffUnlinkPartnerLink`.
#[derive(SimpleObject, Default)]
pub struct UnlinkPartnerPayload {
    /// The link, now ended.
    pub link: Option<PartnerLink>,
    /// `LINK_NOT_FOUND` (`linkId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `setPartnerCoverStartRule`.
#[derive(InputObject)]
pub struct SetPartnerCoverStartRuleInput {
    /// The partner's global id.
    pub partner_id: ID,
    /// Which event starts cover.
    pub starts_on: CoverStartsOn,
}

/// Result of `setPartnerCoverStartRule`.
#[derive(SimpleObject, Default)]
pub struct SetPartnerCoverStartRulePayload {
    /// The rule now in force.
    pub starts_on: Option<CoverStartsOn>,
    /// `NOT_FOUND` (`partnerId`).
    pub user_errors: Vec<UserError>,
}

/// The partners mutations.
#[derive(Default)]
pub struct PartnersMutation;

#[Object]
impl PartnersMutation {
    /// Links the driver who made `linkCode` to the calling partner under the partner's id for
    /// them. Sending the same code and id again returns the same link. Partner keys with
    /// `drivers:link`.
    async fn link_driver(
        &self,
        ctx: &Context<'_>,
        input: LinkDriverInput,
    ) -> async_graphql::Result<LinkDriverPayload> {
        let scope = require_partner_scope(ctx, Scope::DriversLink)?;
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::link_driver(
            &mut conn,
            core.clock.as_ref(),
            scope,
            &input.link_code,
            &input.external_driver_id,
        )
        .await
        {
            Ok(link) => Ok(LinkDriverPayload {
                link: Some(PartnerLink::new(link)),
                user_errors: vec![],
            }),
            Err(e) => Ok(LinkDriverPayload {
                link: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Ends the calling partner's link with one of its drivers; a `driver.unlinked` webhook
    /// follows. Partner keys with `drivers:link`.
    async fn unlink_driver(
        &self,
        ctx: &Context<'_>,
        input: UnlinkDriverInput,
    ) -> async_graphql::Result<LinkDriverPayload> {
        let scope = require_partner_scope(ctx, Scope::DriversLink)?;
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::unlink_by_partner(
            &mut conn,
            core.clock.as_ref(),
            scope,
            &input.external_driver_id,
        )
        .await
        {
            Ok(link) => Ok(LinkDriverPayload {
                link: Some(PartnerLink::new(link)),
                user_errors: vec![],
            }),
            Err(e) => Ok(LinkDriverPayload {
                link: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Records a batch of up to 500 shift events (any order, up to 24 hours late) and switches
    /// cover on and off from each driver's ordered events. Each event gets its own answer; one
    /// bad event never fails the others. Idempotent per event id. Partner keys with
    /// `shifts:write`; test keys record sandbox events that start no real cover.
    async fn record_shift_events(
        &self,
        ctx: &Context<'_>,
        input: RecordShiftEventsInput,
    ) -> async_graphql::Result<RecordShiftEventsPayload> {
        let scope = require_partner_scope(ctx, Scope::ShiftsWrite)?;
        let core = crate::accounts::core(ctx)?;
        let events: Vec<partners::ShiftEventInput> = input
            .events
            .into_iter()
            .map(|e| partners::ShiftEventInput {
                event_id: e.event_id,
                external_driver_id: e.external_driver_id,
                kind: e.kind.into(),
                occurred_at: e.occurred_at,
                vehicle_type: e.vehicle_type.into(),
                reference: e.reference,
            })
            .collect();
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::record_shift_events(
            &mut conn,
            core.clock.as_ref(),
            &core.settings.cover,
            &payments::WalletFunds,
            scope,
            &events,
        )
        .await
        {
            Ok(recorded) => {
                crate::cover::publish_events(core, &recorded.cover_events).await;
                let results = recorded.results;
                let count = |s: partners::ShiftEventStatus| {
                    i32::try_from(results.iter().filter(|r| r.status == s).count())
                        .unwrap_or(i32::MAX)
                };
                Ok(RecordShiftEventsPayload {
                    accepted: count(partners::ShiftEventStatus::Accepted),
                    duplicates: count(partners::ShiftEventStatus::Duplicate),
                    rejected: count(partners::ShiftEventStatus::Rejected),
                    results: results.into_iter().map(ShiftEventResult::from).collect(),
                    user_errors: vec![],
                })
            }
            Err(e) => Ok(RecordShiftEventsPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Registers a webhook endpoint for the calling partner (in its key's mode). The signing
    /// secret is in the payload this once. Partner keys with `webhooks:manage`.
    async fn register_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: RegisterWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointSecretPayload> {
        let scope = require_partner_scope(ctx, Scope::WebhooksManage)?;
        let core = crate::accounts::core(ctx)?;
        let types: Vec<partners::EventType> =
            input.event_types.into_iter().map(Into::into).collect();
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::register_webhook_endpoint(
            &mut conn,
            core.clock.as_ref(),
            &core.settings.partner_webhooks,
            scope,
            &input.url,
            &types,
            input.timeout_ms,
        )
        .await
        {
            Ok(made) => Ok(WebhookEndpointSecretPayload {
                endpoint: Some(WebhookEndpoint::new(made.endpoint)),
                secret: Some(made.secret),
                user_errors: vec![],
            }),
            Err(e) => Ok(WebhookEndpointSecretPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Gives an endpoint a new signing secret (in the payload this once); the old one keeps
    /// signing beside it for `overlapHours`. Partner keys with `webhooks:manage`.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        input: RotateWebhookSecretInput,
    ) -> async_graphql::Result<WebhookEndpointSecretPayload> {
        let scope = require_partner_scope(ctx, Scope::WebhooksManage)?;
        let Some(endpoint_id) =
            parse_global_id::<WebhookEndpointId>(&input.endpoint_id, "WebhookEndpoint")
        else {
            return Ok(WebhookEndpointSecretPayload {
                user_errors: bad_id("endpointId", "ENDPOINT_NOT_FOUND"),
                ..Default::default()
            });
        };
        let core = crate::accounts::core(ctx)?;
        let overlap = Duration::hours(i64::from(input.overlap_hours.unwrap_or(24)));
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::rotate_secret(&mut conn, core.clock.as_ref(), scope, endpoint_id, overlap)
            .await
        {
            Ok(made) => Ok(WebhookEndpointSecretPayload {
                endpoint: Some(WebhookEndpoint::new(made.endpoint)),
                secret: Some(made.secret),
                user_errors: vec![],
            }),
            Err(e) => Ok(WebhookEndpointSecretPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Turns an endpoint off or back on. Partner keys with `webhooks:manage`.
    async fn set_webhook_endpoint_enabled(
        &self,
        ctx: &Context<'_>,
        input: SetWebhookEndpointEnabledInput,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let scope = require_partner_scope(ctx, Scope::WebhooksManage)?;
        let Some(endpoint_id) =
            parse_global_id::<WebhookEndpointId>(&input.endpoint_id, "WebhookEndpoint")
        else {
            return Ok(WebhookEndpointPayload {
                endpoint: None,
                user_errors: bad_id("endpointId", "ENDPOINT_NOT_FOUND"),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::set_endpoint_enabled(
            &mut conn,
            core.clock.as_ref(),
            scope,
            endpoint_id,
            input.enabled,
        )
        .await
        {
            Ok(endpoint) => Ok(WebhookEndpointPayload {
                endpoint: Some(WebhookEndpoint::new(endpoint)),
                user_errors: vec![],
            }),
            Err(e) => Ok(WebhookEndpointPayload {
                endpoint: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Sends a delivery again, whatever its status, with the same event id and body (retried
    /// for 3 days from now). Partner keys with `webhooks:manage` (their own), and ops.
    async fn replay_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        input: ReplayWebhookDeliveryInput,
    ) -> async_graphql::Result<ReplayWebhookDeliveryPayload> {
        let viewer = require_delivery_viewer(ctx)?;
        let Some(delivery_id) =
            parse_global_id::<WebhookDeliveryId>(&input.delivery_id, "WebhookDelivery")
        else {
            return Ok(ReplayWebhookDeliveryPayload {
                delivery: None,
                user_errors: bad_id("deliveryId", "DELIVERY_NOT_FOUND"),
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(ReplayWebhookDeliveryPayload {
                    delivery: None,
                    user_errors: vec![e],
                });
            }
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::replay_delivery(&mut conn, core.clock.as_ref(), viewer, delivery_id, reason)
            .await
        {
            Ok(d) => Ok(ReplayWebhookDeliveryPayload {
                delivery: Some(WebhookDelivery::new(d, viewer)),
                user_errors: vec![],
            }),
            Err(e) => Ok(ReplayWebhookDeliveryPayload {
                delivery: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Makes a short code the signed-in driver gives a delivery or ride-hailing platform to
    /// link their account there (valid for a limited time, used once). Drivers only.
    async fn create_link_code(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<CreateLinkCodePayload> {
        let driver = guard::require_driver(ctx)?;
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::create_link_code(&mut conn, core.clock.as_ref(), driver.driver_id).await {
            Ok(code) => Ok(CreateLinkCodePayload {
                code: Some(code.code),
                expires_at: Some(code.expires_at),
                user_errors: vec![],
            }),
            Err(e) => Ok(CreateLinkCodePayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Ends one of the signed-in driver's partner links: that partner's events no longer start
    /// their cover. Drivers only.
    async fn unlink_partner(
        &self,
        ctx: &Context<'_>,
        input: UnlinkPartnerInput,
    ) -> async_graphql::Result<UnlinkPartnerPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(link_id) = parse_global_id::<LinkId>(&input.link_id, "PartnerLink") else {
            return Ok(UnlinkPartnerPayload {
                link: None,
                user_errors: bad_id("linkId", "LINK_NOT_FOUND"),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::unlink_by_driver(&mut conn, core.clock.as_ref(), driver.driver_id, link_id)
            .await
        {
            Ok(link) => Ok(UnlinkPartnerPayload {
                link: Some(PartnerLink::new(link)),
                user_errors: vec![],
            }),
            Err(e) => Ok(UnlinkPartnerPayload {
                link: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Ends any partner link (ops).
    async fn staff_unlink_partner_link(
        &self,
        ctx: &Context<'_>,
        input: UnlinkPartnerInput,
    ) -> async_graphql::Result<UnlinkPartnerPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(link_id) = parse_global_id::<LinkId>(&input.link_id, "PartnerLink") else {
            return Ok(UnlinkPartnerPayload {
                link: None,
                user_errors: bad_id("linkId", "LINK_NOT_FOUND"),
            });
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::unlink_by_staff(&mut conn, core.clock.as_ref(), staff.staff_id, link_id)
            .await
        {
            Ok(link) => Ok(UnlinkPartnerPayload {
                link: Some(PartnerLink::new(link)),
                user_errors: vec![],
            }),
            Err(e) => Ok(UnlinkPartnerPayload {
                link: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Sets which event starts a partner's cover (ops): the first accepted job (default) or
    /// going online. Applies to working periods computed from now on.
    async fn set_partner_cover_start_rule(
        &self,
        ctx: &Context<'_>,
        input: SetPartnerCoverStartRuleInput,
    ) -> async_graphql::Result<SetPartnerCoverStartRulePayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let not_found = || {
            Ok(SetPartnerCoverStartRulePayload {
                starts_on: None,
                user_errors: bad_id("partnerId", "NOT_FOUND"),
            })
        };
        let Some(partner_id) = parse_global_id::<PartnerId>(&input.partner_id, "Partner") else {
            return not_found();
        };
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match accounts::get_partner(&mut conn, partner_id).await {
            Ok(_) => {}
            Err(accounts::AccountsError::NotFound(_)) => return not_found(),
            Err(e) => return Err(crate::errors::internal(ctx, e)),
        }
        match partners::set_cover_start_rule(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            partner_id,
            input.starts_on.into(),
        )
        .await
        {
            Ok(()) => Ok(SetPartnerCoverStartRulePayload {
                starts_on: Some(input.starts_on),
                user_errors: vec![],
            }),
            Err(e) => Ok(SetPartnerCoverStartRulePayload {
                starts_on: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }
}
