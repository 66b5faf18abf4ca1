//! Partners queries (see the module docs of [`super`] for who may call what).

use super::{
    CoverStartsOn, DriverCoverStatus, PartnerCoverSession, PartnerLink, WebhookDelivery,
    WebhookEndpoint, query_error, require_delivery_viewer, require_partner_scope,
};
use crate::errors::internal;
use crate::guard;
use crate::relay::parse_global_id;
use accounts::{PartnerId, Role, Scope};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};
use partners::{LinkId, PartnersError, WebhookDeliveryId, WebhookEndpointId};

/// The partners queries.
#[derive(Default)]
pub struct PartnersQuery;

#[Object]
impl PartnersQuery {
    /// The calling partner's linked drivers (links in force), oldest first. Partner keys with
    /// `drivers:link`.
    async fn partner_drivers(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return links after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, PartnerLink>> {
        let scope = require_partner_scope(ctx, Scope::DriversLink)?;
        let first = i64::from(first.unwrap_or(20));
        let after_id = match after.as_deref() {
            None => None,
            Some(c) => Some(c.parse::<LinkId>().map_err(|_| {
                crate::errors::coded("INVALID_CURSOR", "That cursor is not one of ours.")
            })?),
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        let mut links = partners::list_links_for_partner(&mut conn, scope, after_id, first + 1)
            .await
            .map_err(|e| query_error(ctx, e))?;
        let has_next = links.len() as i64 > first;
        links.truncate(usize::try_from(first).unwrap_or(0));
        let mut page = Connection::new(after_id.is_some(), has_next);
        page.edges.extend(
            links
                .into_iter()
                .map(|l| Edge::new(l.id.to_string(), PartnerLink::new(l))),
        );
        Ok(page)
    }

    /// One of the calling partner's linked drivers by the partner's id for them; null when the
    /// partner has no link in force under that id. Partner keys with `drivers:link`.
    async fn partner_driver(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The partner's id for the driver.")] external_driver_id: String,
    ) -> async_graphql::Result<Option<PartnerLink>> {
        let scope = require_partner_scope(ctx, Scope::DriversLink)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::get_link_for_partner(&mut conn, scope, &external_driver_id).await {
            Ok(link) => Ok(Some(PartnerLink::new(link))),
            Err(PartnersError::UnknownDriver | PartnersError::NotLinked) => Ok(None),
            Err(e) => Err(query_error(ctx, e)),
        }
    }

    /// Is this driver covered? For one of the calling partner's linked drivers, at `at` (now
    /// when omitted): the session, its certificate number and a signed proof-of-cover token.
    /// Errors (`extensions.code`): `INVALID_EXTERNAL_DRIVER_ID`, `UNKNOWN_DRIVER` (never linked
    /// by this partner — other partners' drivers included), `NOT_LINKED` (unlinked since).
    /// Partner keys with `cover:read`.
    async fn cover_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The partner's id for the driver.")] external_driver_id: String,
        #[graphql(desc = "The time asked about; now when omitted.")] at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<DriverCoverStatus> {
        let scope = require_partner_scope(ctx, Scope::CoverRead)?;
        let core = crate::accounts::core(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let status = partners::partner_cover_status(
            &mut conn,
            core.clock.as_ref(),
            &core.settings,
            scope,
            &external_driver_id,
            at,
        )
        .await
        .map_err(|e| query_error(ctx, e))?;
        Ok(DriverCoverStatus {
            external_driver_id: status.external_driver_id,
            at: status.at,
            covered: status.covered,
            session: status
                .session
                .as_ref()
                .map(|s| PartnerCoverSession::new(s, scope.partner_id)),
            certificate_number: status.certificate_number,
            proof_token: status.proof_token,
        })
    }

    /// Webhook endpoints, oldest first: the calling partner's (in its key's mode; keys with
    /// `webhooks:manage`), or for ops the partner named by `partnerId` (live and test).
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The partner's global id (ops only; partners see their own).")]
        partner_id: Option<ID>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let viewer = require_delivery_viewer(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let scopes = match viewer {
            partners::Viewer::Partner(scope) => vec![scope],
            partners::Viewer::Staff(_) => {
                let Some(id) = partner_id
                    .as_deref()
                    .and_then(|id| parse_global_id::<PartnerId>(id, "Partner"))
                else {
                    return Ok(vec![]);
                };
                vec![
                    partners::PartnerScope::live(id),
                    partners::PartnerScope::test(id),
                ]
            }
        };
        let mut out = Vec::new();
        for scope in scopes {
            let endpoints = partners::list_webhook_endpoints(&mut conn, scope)
                .await
                .map_err(|e| query_error(ctx, e))?;
            out.extend(endpoints.into_iter().map(WebhookEndpoint::new));
        }
        Ok(out)
    }

    /// An endpoint's deliveries, newest first. Errors: `ENDPOINT_NOT_FOUND` (also another
    /// partner's). Partner keys with `webhooks:manage`, and ops.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint's global id.")] endpoint_id: ID,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 10,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return deliveries after this cursor (older ones).")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, WebhookDelivery>> {
        let viewer = require_delivery_viewer(ctx)?;
        let Some(endpoint_id) =
            parse_global_id::<WebhookEndpointId>(&endpoint_id, "WebhookEndpoint")
        else {
            return Err(query_error(ctx, PartnersError::EndpointNotFound));
        };
        let before = match after.as_deref() {
            None => None,
            Some(c) => Some(c.parse::<WebhookDeliveryId>().map_err(|_| {
                crate::errors::coded("INVALID_CURSOR", "That cursor is not one of ours.")
            })?),
        };
        let first = i64::from(first.unwrap_or(10));
        let mut conn = crate::accounts::conn(ctx).await?;
        let mut rows = partners::list_deliveries(&mut conn, viewer, endpoint_id, before, first + 1)
            .await
            .map_err(|e| query_error(ctx, e))?;
        let has_next = rows.len() as i64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(0));
        let mut page = Connection::new(before.is_some(), has_next);
        page.edges.extend(
            rows.into_iter()
                .map(|d| Edge::new(d.id.to_string(), WebhookDelivery::new(d, viewer))),
        );
        Ok(page)
    }

    /// One delivery, with its attempts; null when unknown (or another partner's). Partner keys
    /// with `webhooks:manage`, and ops.
    async fn webhook_delivery(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The delivery's global id.")] id: ID,
    ) -> async_graphql::Result<Option<WebhookDelivery>> {
        let viewer = require_delivery_viewer(ctx)?;
        let Some(id) = parse_global_id::<WebhookDeliveryId>(&id, "WebhookDelivery") else {
            return Ok(None);
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        match partners::get_delivery(&mut conn, viewer, id).await {
            Ok(d) => Ok(Some(WebhookDelivery::new(d, viewer))),
            Err(PartnersError::DeliveryNotFound) => Ok(None),
            Err(e) => Err(query_error(ctx, e)),
        }
    }

    /// The signed-in driver's partner links in force, oldest first. Drivers only.
    async fn partner_links(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PartnerLink>> {
        let driver = guard::require_driver(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        partners::list_links_for_driver(&mut conn, driver.driver_id)
            .await
            .map(|v| v.into_iter().map(PartnerLink::new).collect())
            .map_err(|e| query_error(ctx, e))
    }

    /// Which event starts a partner's cover (ops); null when the id names no partner.
    async fn partner_cover_start_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The partner's global id.")] partner_id: ID,
    ) -> async_graphql::Result<Option<CoverStartsOn>> {
        guard::require_staff(ctx, Role::Ops)?;
        let Some(partner_id) = parse_global_id::<PartnerId>(&partner_id, "Partner") else {
            return Ok(None);
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        match accounts::get_partner(&mut conn, partner_id).await {
            Ok(_) => {}
            Err(accounts::AccountsError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(internal(ctx, e)),
        }
        partners::get_cover_start_rule(&mut conn, partner_id)
            .await
            .map(|r| Some(r.into()))
            .map_err(|e| query_error(ctx, e))
    }
}
