//! The foundation's part of the schema: `node`/`nodes`, `serverInfo`, and the demo job
//! (`enqueueDemoPing`, the `Job` node) that proves the outbox path end to end.
//!
//! `node(id)` is the one place every type with a global id is resolved; each type's resolver
//! checks that the viewer may see the object and answers null otherwise, exactly as for an id
//! that names nothing (see [`crate::guard`]).

use crate::errors::{InternalExt, UserError};
use crate::guard;
use crate::relay::from_global_id;
use async_graphql::{Context, ID, InputObject, Interface, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::core::Core;
use shared::demo::DemoPing;
use shared::ids::JobId;
use shared::schema::outbox_jobs;

/// An object with a global id, fetchable with `node(id:)`.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The object's global id."))]
pub enum Node {
    /// A background job (ops).
    Job(Job),
    /// A driver (the driver themself, ops).
    Driver(crate::accounts::Driver),
    /// A driver's vehicle (its driver, ops).
    Vehicle(crate::accounts::Vehicle),
    /// A partner platform (the partner itself, ops).
    Partner(crate::accounts::Partner),
    /// A driver's enrolment in a product (its driver, ops).
    Enrolment(crate::cover::Enrolment),
    /// A period on cover (its driver, ops).
    CoverSession(crate::cover::CoverSession),
    /// A payment into a wallet (its driver, ops, finance).
    Payment(crate::payments::Payment),
    /// A refund (its driver, ops, finance).
    Refund(crate::payments::Refund),
    /// A saved card (its driver, ops, finance).
    PaymentMethod(crate::payments::PaymentMethod),
    /// A claim (its driver, ops).
    Claim(crate::claims::Claim),
    /// A dispute of a session's charge (its driver, ops).
    ChargeDispute(crate::claims::ChargeDispute),
}

/// A background job in the outbox (defined with the ops part of the schema).
pub use crate::ops::Job;

/// Facts about the running server.
#[derive(SimpleObject)]
pub struct ServerInfo {
    /// The release version.
    pub version: String,
    /// `development`, `test` or `production`.
    pub environment: String,
    /// The server's current time.
    pub time: DateTime<Utc>,
}

/// The foundation's queries.
#[derive(Default)]
pub struct FoundationQuery;

#[Object]
impl FoundationQuery {
    /// Fetches any object by its global id; null when it does not exist or the viewer may not see it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        resolve_node(ctx, &id).await
    }

    /// Fetches several objects by global id, in order; null for each one not visible.
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_items = 100))] ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        // Resolved together, so the DataLoaders batch their reads into one query per type.
        futures::future::try_join_all(ids.iter().map(|id| resolve_node(ctx, id))).await
    }

    /// The server's version, environment and time.
    async fn server_info(&self, ctx: &Context<'_>) -> ServerInfo {
        let core = ctx.data_opt::<Core>();
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            environment: core
                .map(|c| format!("{:?}", c.settings.environment).to_lowercase())
                .unwrap_or_default(),
            time: core.map(|c| c.clock.now()).unwrap_or_else(Utc::now),
        }
    }
}

async fn resolve_node(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<Option<Node>> {
    let Some((type_name, raw)) = from_global_id(id) else {
        return Ok(None);
    };
    match type_name.as_str() {
        "Job" => {
            if !guard::may_view_jobs(guard::principal(ctx)) {
                return Ok(None);
            }
            let Ok(job_id) = raw.parse::<JobId>() else {
                return Ok(None);
            };
            Ok(load_job(ctx, job_id).await?.map(Node::Job))
        }
        "Driver" => Ok(crate::accounts::driver_node(ctx, &raw)
            .await?
            .map(Node::Driver)),
        "Vehicle" => Ok(crate::accounts::vehicle_node(ctx, &raw)
            .await?
            .map(Node::Vehicle)),
        "Partner" => Ok(crate::accounts::partner_node(ctx, &raw)
            .await?
            .map(Node::Partner)),
        "Enrolment" => Ok(crate::cover::enrolments::enrolment_node(ctx, &raw)
            .await?
            .map(Node::Enrolment)),
        "CoverSession" => Ok(crate::cover::sessions::session_node(ctx, &raw)
            .await?
            .map(Node::CoverSession)),
        "Payment" => Ok(crate::payments::payment_node(ctx, &raw)
            .await?
            .map(Node::Payment)),
        "Refund" => Ok(crate::payments::refund_node(ctx, &raw)
            .await?
            .map(Node::Refund)),
        "PaymentMethod" => Ok(crate::payments::payment_method_node(ctx, &raw)
            .await?
            .map(Node::PaymentMethod)),
        "Claim" => Ok(crate::claims::claim_node(ctx, &raw).await?.map(Node::Claim)),
        "ChargeDispute" => Ok(crate::claims::dispute_node(ctx, &raw)
            .await?
            .map(Node::ChargeDispute)),
        _ => Ok(None),
    }
}

async fn load_job(ctx: &Context<'_>, id: JobId) -> async_graphql::Result<Option<Job>> {
    let core = ctx.data::<Core>()?;
    let mut conn = core.pool.get().await.internal(ctx)?;
    outbox_jobs::table
        .find(id)
        .select(Job::as_select())
        .first(&mut conn)
        .await
        .optional()
        .internal(ctx)
}

/// Input of `enqueueDemoPing`.
#[derive(InputObject)]
pub struct EnqueueDemoPingInput {
    /// Text the job records (1 to 200 characters).
    pub message: String,
    /// The same key enqueues once.
    pub idempotency_key: String,
}

/// Result of `enqueueDemoPing`.
#[derive(SimpleObject, Default)]
pub struct EnqueueDemoPingPayload {
    /// The job, when it was enqueued (or had been, with the same key).
    pub job: Option<Job>,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

/// The foundation's mutations.
#[derive(Default)]
pub struct FoundationMutation;

#[Object]
impl FoundationMutation {
    /// Enqueues the demo job through the outbox (not available in production).
    async fn enqueue_demo_ping(
        &self,
        ctx: &Context<'_>,
        input: EnqueueDemoPingInput,
    ) -> async_graphql::Result<EnqueueDemoPingPayload> {
        guard::require_non_production(ctx)?;
        let mut errors = Vec::new();
        let len = input.message.chars().count();
        if len == 0 || len > 200 {
            errors.push(UserError {
                field: Some("message".into()),
                code: "INVALID_MESSAGE".into(),
                message: "The message must be 1 to 200 characters.".into(),
            });
        }
        let key_len = input.idempotency_key.len();
        if !(8..=100).contains(&key_len) {
            errors.push(UserError {
                field: Some("idempotencyKey".into()),
                code: "INVALID_IDEMPOTENCY_KEY".into(),
                message: "The idempotency key must be 8 to 100 characters.".into(),
            });
        }
        if !errors.is_empty() {
            return Ok(EnqueueDemoPingPayload {
                job: None,
                user_errors: errors,
            });
        }
        let core = ctx.data::<Core>()?;
        let mut conn = core.pool.get().await.internal(ctx)?;
        let job = DemoPing {
            message: input.message,
            key: input.idempotency_key,
        };
        shared::outbox::enqueue(&mut conn, &job)
            .await
            .internal(ctx)?;
        let row = outbox_jobs::table
            .filter(outbox_jobs::job_type.eq("DemoPing"))
            .filter(outbox_jobs::idempotency_key.eq(&job.key))
            .select(Job::as_select())
            .first(&mut conn)
            .await
            .internal(ctx)?;
        Ok(EnqueueDemoPingPayload {
            job: Some(row),
            user_errors: vec![],
        })
    }
}
