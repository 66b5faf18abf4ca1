//! The partners part of the schema: what partner platforms call with their API keys (linking
//! drivers, shift events, "is this driver covered?", webhook endpoints and their deliveries),
//! what drivers do in the app (link codes, their links), and what ops do (replays, unlinking,
//! how a partner's events start cover).
//!
//! Who may call what:
//!
//! | field                                              | driver | partner key (scope)  | ops / admin |
//! |----------------------------------------------------|--------|----------------------|-------------|
//! | `linkDriver`, `unlinkDriver`, `partnerDrivers`     | no     | `drivers:link`       | no          |
//! | `recordShiftEvents`                                | no     | `shifts:write`       | no          |
//! | `driverCoverStatus`                                | no     | `cover:read`         | no          |
//! | `webhookEndpoints`, `webhookDeliveries`, `webhookDelivery`, `replayWebhookDelivery` | no | `webhooks:manage` | yes |
//! | `registerWebhookEndpoint`, `rotateWebhookSecret`, `setWebhookEndpointEnabled` | no | `webhooks:manage` | no |
//! | `createLinkCode`, `partnerLinks`, `unlinkPartner`  | yes    | no                   | no          |
//! | `staffUnlinkPartnerLink`, `setPartnerCoverStartRule`, `partnerCoverStartRule` | no | no | yes |
//!
//! A key without the scope a field needs gets `FORBIDDEN` naming the scope. A partner sees only
//! its own drivers, endpoints and deliveries, in its key's mode: a test key sees test data only.
//! Another partner's object answers like one that does not exist.

pub mod mutation;
pub mod query;

use crate::errors::{UserError, coded, internal};
use crate::guard;
use crate::relay::to_global_id;
use accounts::{Principal, Role, Scope};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use partners::{PartnerScope, PartnersError, Viewer};

pub use mutation::PartnersMutation;
pub use query::PartnersQuery;

/// The calling partner's scope (partner and mode) when its key carries `scope`; otherwise
/// `UNAUTHENTICATED` (anonymous) or `FORBIDDEN` (anyone else, or a key without the scope).
pub(crate) fn require_partner_scope(
    ctx: &Context<'_>,
    scope: Scope,
) -> async_graphql::Result<PartnerScope> {
    let partner = guard::require_partner(ctx)?;
    if !partner.has_scope(scope) {
        return Err(coded(
            "FORBIDDEN",
            format!("This API key lacks the `{}` scope.", scope.as_str()),
        ));
    }
    Ok(PartnerScope::from(&partner))
}

/// Who reads webhook deliveries: a partner key with `webhooks:manage`, or ops.
pub(crate) fn require_delivery_viewer(ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
    match guard::principal(ctx) {
        Principal::Staff(s) if s.has(Role::Ops) => Ok(Viewer::Staff(s.staff_id)),
        Principal::Partner(_) => Ok(Viewer::Partner(require_partner_scope(
            ctx,
            Scope::WebhooksManage,
        )?)),
        Principal::Anonymous => Err(guard::unauthenticated()),
        _ => Err(guard::forbidden()),
    }
}

/// A partners error as `userErrors`, or an internal error when the caller cannot fix it.
pub(crate) fn user_errors(
    ctx: &Context<'_>,
    err: PartnersError,
) -> async_graphql::Result<Vec<UserError>> {
    match err.user_error() {
        Some(e) => Ok(vec![UserError::from(e)]),
        None => Err(internal(ctx, err)),
    }
}

/// A partners error as a request-level error with its code (for queries), or internal.
pub(crate) fn query_error(ctx: &Context<'_>, err: PartnersError) -> async_graphql::Error {
    match err.user_error() {
        Some(e) => coded(e.code, e.message),
        None => internal(ctx, err),
    }
}

/// The `userErrors` for an id argument that is not an id of the expected type.
pub(crate) fn bad_id(field: &str, code: &str) -> Vec<UserError> {
    vec![UserError {
        field: Some(field.to_owned()),
        code: code.to_owned(),
        message: "Not found.".to_owned(),
    }]
}

/// What a partner reports about a driver.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::ShiftEventKind")]
pub enum ShiftEventKind {
    /// The driver is available for work.
    Online,
    /// The driver took a job.
    JobAccepted,
    /// The driver finished a job.
    JobCompleted,
    /// The driver stopped working.
    Offline,
}

/// How one event of a batch was taken.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::ShiftEventStatus")]
pub enum ShiftEventStatus {
    /// Recorded now.
    Accepted,
    /// Recorded before with the same content; nothing new happened.
    Duplicate,
    /// Refused: `code` says why.
    Rejected,
}

/// What an event gave for cover.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftEventCover {
    /// The driver is covered for the event's time (`sessionId` names the session).
    Covered,
    /// The driver cannot be covered (`notCoveredCode` says why); a `cover.not_covered` webhook
    /// was sent.
    NotCovered,
    /// The event changes no cover: outside working time, the driver already on cover by other
    /// means, or a test key's event (the sandbox starts no real cover).
    Unchanged,
}

/// What a webhook reports.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::EventType")]
pub enum WebhookEventType {
    /// `cover.started`: a session started from the partner's events.
    CoverStarted,
    /// `cover.ended`: such a session ended.
    CoverEnded,
    /// `cover.not_covered`: the partner's events asked for cover the driver cannot have.
    CoverNotCovered,
    /// `driver.unlinked`: a driver was unlinked from the partner (by either side or ops).
    DriverUnlinked,
}

/// Where a webhook delivery stands.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::DeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Not yet accepted by the endpoint; attempts continue (with backoff, for up to 3 days).
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Attempts stopped without a 2xx: the retry period ended or the endpoint was disabled.
    Failed,
}

/// Which event starts a partner's cover.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::CoverStartsOn")]
pub enum CoverStartsOn {
    /// The first accepted job (the default): waiting for work is not covered.
    JobAccepted,
    /// Going online.
    Online,
}

/// Who ended a link.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "partners::UnlinkedBy")]
pub enum UnlinkedBy {
    /// The driver, in the app.
    Driver,
    /// The partner, through the API.
    Partner,
    /// Ops.
    Staff,
}

/// A driver linked to a partner: the partner's id for the driver, and how the link is used.
#[derive(Debug, Clone)]
pub struct PartnerLink {
    inner: partners::Link,
}

impl PartnerLink {
    pub(crate) fn new(inner: partners::Link) -> Self {
        Self { inner }
    }
}

/// A driver linked to a partner. Partners see their own links (with their key's `drivers:link`
/// scope); drivers see theirs.
#[Object]
impl PartnerLink {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("PartnerLink", &self.inner.id)
    }
    /// The partner's id for the driver.
    async fn external_driver_id(&self) -> &str {
        &self.inner.external_driver_id
    }
    /// The partner's name.
    async fn partner_name(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let mut conn = crate::accounts::conn(ctx).await?;
        accounts::get_partner(&mut conn, self.inner.partner_id)
            .await
            .map(|p| p.name)
            .map_err(|e| internal(ctx, e))
    }
    /// Made with a test key (sandbox: events start no real cover).
    async fn test_mode(&self) -> bool {
        self.inner.test_mode
    }
    /// When it was made.
    async fn linked_at(&self) -> DateTime<Utc> {
        self.inner.linked_at
    }
    /// When it was undone, if it was.
    async fn unlinked_at(&self) -> Option<DateTime<Utc>> {
        self.inner.unlinked_at
    }
    /// Who undid it.
    async fn unlinked_by(&self) -> Option<UnlinkedBy> {
        self.inner.unlinked_by.map(Into::into)
    }
    /// When the latest event accepted for it happened.
    async fn last_event_at(&self) -> Option<DateTime<Utc>> {
        self.inner.last_event_at
    }
    /// When it was flagged for a long time without events (it keeps working; the next event
    /// clears the flag).
    async fn flagged_stale_at(&self) -> Option<DateTime<Utc>> {
        self.inner.flagged_stale_at
    }
}

/// A cover session, as the partner whose driver it covers sees it.
#[derive(SimpleObject, Debug, Clone)]
pub struct PartnerCoverSession {
    /// This view's own global id, one per partner and session. It is not the session's id (a
    /// client cache keyed by `id` must not take this partner's view for the driver's session):
    /// that is `coverSessionId`.
    pub id: ID,
    /// The `CoverSession`'s global id, for support (only the driver and ops can open it).
    pub cover_session_id: ID,
    /// When cover started.
    pub started_at: DateTime<Utc>,
    /// When cover ended, or ends at the latest while active.
    pub covered_until: DateTime<Utc>,
    /// When cover ended, once it has.
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether it is still running.
    pub active: bool,
    /// Whether the partner's own events started it.
    pub started_by_partner: bool,
    /// The certificate number.
    pub certificate_number: String,
}

impl PartnerCoverSession {
    pub(crate) fn new(s: &cover::CoverSession, partner_id: accounts::PartnerId) -> Self {
        Self {
            id: partner_cover_session_id(partner_id, s.id),
            cover_session_id: to_global_id("CoverSession", &s.id),
            started_at: s.started_at,
            covered_until: s.covered_until(),
            ended_at: s.ended_at,
            active: s.is_active(),
            started_by_partner: matches!(
                s.source,
                cover::SessionSource::Partner { partner_id: p, .. } if p == partner_id
            ),
            certificate_number: s.certificate_number.clone(),
        }
    }
}

/// The global id of `partner`'s view of `session`: `PartnerCoverSession:<partner>/<session>`.
pub fn partner_cover_session_id(
    partner: accounts::PartnerId,
    session: cover::CoverSessionId,
) -> ID {
    to_global_id("PartnerCoverSession", &format!("{partner}/{session}"))
}

/// Whether a partner's driver is covered at a time.
#[derive(SimpleObject, Debug, Clone)]
pub struct DriverCoverStatus {
    /// The partner's id for the driver.
    pub external_driver_id: String,
    /// The time asked about.
    pub at: DateTime<Utc>,
    /// Whether the driver is covered then (by any session: the partner's events, another
    /// partner's, or the driver's own start).
    pub covered: bool,
    /// The session that covers them.
    pub session: Option<PartnerCoverSession>,
    /// Its certificate number.
    pub certificate_number: Option<String>,
    /// A signed proof-of-cover token anyone can check (`verifyCover`, `/verify/{token}`).
    pub proof_token: Option<String>,
}

/// A partner's webhook endpoint (never its secret).
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    inner: partners::WebhookEndpoint,
}

impl WebhookEndpoint {
    pub(crate) fn new(inner: partners::WebhookEndpoint) -> Self {
        Self { inner }
    }
}

/// Where a partner receives signed events. Each delivery is a POST of JSON with the header
/// `ShiftCover-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (a second
/// `v1=` during a secret rotation's overlap).
#[Object]
impl WebhookEndpoint {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("WebhookEndpoint", &self.inner.id)
    }
    /// Where deliveries are POSTed.
    async fn url(&self) -> &str {
        &self.inner.url
    }
    /// What it receives.
    async fn event_types(&self) -> Vec<WebhookEventType> {
        self.inner
            .event_types
            .iter()
            .copied()
            .map(Into::into)
            .collect()
    }
    /// Whether it receives anything.
    async fn enabled(&self) -> bool {
        self.inner.enabled
    }
    /// Whether it receives test-mode events (registered with a test key).
    async fn test_mode(&self) -> bool {
        self.inner.test_mode
    }
    /// How long an attempt waits for the answer, in milliseconds.
    async fn timeout_ms(&self) -> i32 {
        self.inner.timeout_ms
    }
    /// Until when the previous secret also signs, after a rotation.
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.inner.previous_secret_expires_at
    }
    /// When it was registered.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    inner: partners::WebhookDelivery,
    viewer: Viewer,
}

impl WebhookDelivery {
    pub(crate) fn new(inner: partners::WebhookDelivery, viewer: Viewer) -> Self {
        Self { inner, viewer }
    }
}

/// One event's delivery to one endpoint, with its attempts.
#[Object]
impl WebhookDelivery {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("WebhookDelivery", &self.inner.id)
    }
    /// The endpoint's global id.
    async fn endpoint_id(&self) -> ID {
        to_global_id("WebhookEndpoint", &self.inner.endpoint_id)
    }
    /// What it reports.
    async fn event_type(&self) -> WebhookEventType {
        self.inner.event_type.into()
    }
    /// The event's id (`evt_…`), the same in every delivery of the event and every replay: a
    /// receiver drops repeats by it.
    async fn event_id(&self) -> &str {
        &self.inner.event_id
    }
    /// The JSON body sent.
    async fn payload(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(self.inner.payload.clone())
    }
    /// Where it stands.
    async fn status(&self) -> WebhookDeliveryStatus {
        self.inner.status.into()
    }
    /// Attempts made, over all rounds.
    async fn attempt_count(&self) -> i32 {
        self.inner.attempts
    }
    /// Replays asked for.
    async fn replays(&self) -> i32 {
        self.inner.replays
    }
    /// When the next attempt is due, while pending.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.inner.next_attempt_at
    }
    /// When the latest attempt was made.
    async fn last_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.inner.last_attempt_at
    }
    /// When attempts stop, while pending.
    async fn give_up_at(&self) -> DateTime<Utc> {
        self.inner.give_up_at
    }
    /// When the endpoint accepted it.
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.inner.delivered_at
    }
    /// When attempts stopped without success.
    async fn failed_at(&self) -> Option<DateTime<Utc>> {
        self.inner.failed_at
    }
    /// When the event happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// Every attempt, oldest first: status, latency and the start of the answer.
    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookAttempt>> {
        let mut conn = crate::accounts::conn(ctx).await?;
        partners::list_attempts(&mut conn, self.viewer, self.inner.id)
            .await
            .map(|v| v.into_iter().map(WebhookAttempt::from).collect())
            .map_err(|e| query_error(ctx, e))
    }
}

/// One attempt at a delivery.
#[derive(SimpleObject, Debug, Clone)]
pub struct WebhookAttempt {
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered, if any.
    pub status_code: Option<i32>,
    /// How long the endpoint took (or until the attempt gave up), in milliseconds.
    pub latency_ms: i32,
    /// The start of the answer's body (up to 500 characters).
    pub response_snippet: Option<String>,
    /// Why there was no answer (timeout, refused connection), if there was none.
    pub error: Option<String>,
    /// Whether the endpoint accepted it (2xx).
    pub succeeded: bool,
}

impl From<partners::WebhookAttempt> for WebhookAttempt {
    fn from(a: partners::WebhookAttempt) -> Self {
        Self {
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_snippet: a.response_snippet,
            error: a.error,
            succeeded: a.succeeded,
        }
    }
}
