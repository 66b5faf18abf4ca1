//! The `coverStatus` subscription: the signed-in driver's cover events, live, over WebSocket
//! (`graphql-transport-ws` or the older `graphql-ws` protocol) at `GET /graphql/ws`.
//!
//! The socket is authenticated once, from the `connection_init` payload
//! (`{ "authorization": "Bearer <driver token>" }`), with the same checks as a bearer token on
//! `/graphql`; a connection without a valid driver token is closed before any subscription runs.
//! Events come from the driver's Redis channel ([`cover::cover_channel`]), where the API and the
//! workers publish them after commit; each carries the session as it is when the event arrives.

use super::loaders::CoverLoader;
use super::sessions::CoverSession;
use super::{core, may_view_cover_of};
use crate::accounts::loaders::AccountsLoader;
use crate::context::{ClientAddr, RequestId, Viewer};
use crate::errors::{coded, internal};
use crate::guard;
use crate::http::ApiState;
use crate::viewer::{Credential, bearer_credential};
use accounts::Principal;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use async_graphql::{Context, Data, Enum, Object, Subscription};
use async_graphql_actix_web::GraphQLSubscription;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use shared::core::Core;

/// What happened to the driver's cover.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "cover::CoverEventKind")]
pub enum CoverEventKind {
    /// A session started.
    Started,
    /// A session will end soon (maximum length or a partner's gap rule).
    EndingSoon,
    /// A session ended.
    Ended,
    /// The enrolment was suspended: no new session can start.
    Suspended,
}

/// One change of the driver's cover.
#[derive(Debug, Clone)]
pub struct CoverStatusEvent {
    kind: cover::CoverEventKind,
    at: DateTime<Utc>,
    session: Option<cover::CoverSession>,
    viewer: Principal,
}

/// One change of the driver's cover, with the session concerned as it is now.
#[Object]
impl CoverStatusEvent {
    /// What happened.
    async fn kind(&self) -> CoverEventKind {
        self.kind.into()
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }
    /// The session concerned; null for an enrolment change with no session running.
    async fn session(&self) -> Option<CoverSession> {
        self.session
            .clone()
            .filter(|s| may_view_cover_of(&self.viewer, s.driver_id))
            .map(|s| CoverSession::new(s, self.viewer.clone()))
    }
}

/// Cover subscriptions.
#[derive(Default)]
pub struct CoverSubscription;

#[Subscription]
impl CoverSubscription {
    /// The signed-in driver's cover events, as they happen: `STARTED`, `ENDING_SOON`, `ENDED`,
    /// `SUSPENDED`. Drivers only.
    async fn cover_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = CoverStatusEvent> + use<>> {
        let driver = guard::require_driver(ctx)?;
        let viewer = guard::principal(ctx).clone();
        let core = core(ctx)?.clone();
        let client =
            redis::Client::open(core.settings.redis.url.expose()).map_err(|e| internal(ctx, e))?;
        let mut pubsub = client.get_async_pubsub().await.map_err(|_| {
            coded(
                "SERVICE_UNAVAILABLE",
                "Live status is unavailable; try again shortly.",
            )
        })?;
        pubsub
            .subscribe(cover::cover_channel(core.redis.prefix(), driver.driver_id))
            .await
            .map_err(|_| {
                coded(
                    "SERVICE_UNAVAILABLE",
                    "Live status is unavailable; try again shortly.",
                )
            })?;
        let driver_id = driver.driver_id;
        Ok(pubsub.into_on_message().filter_map(move |msg| {
            let core = core.clone();
            let viewer = viewer.clone();
            async move {
                let payload: String = msg.get_payload().ok()?;
                let event: cover::CoverEvent = match serde_json::from_str(&payload) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "cover event not understood");
                        return None;
                    }
                };
                if event.driver_id != driver_id {
                    return None;
                }
                let session = match event.session_id {
                    Some(id) => load_session(&core, id).await,
                    None => None,
                };
                Some(CoverStatusEvent {
                    kind: event.kind,
                    at: event.at,
                    session,
                    viewer,
                })
            }
        }))
    }
}

async fn load_session(core: &Core, id: cover::CoverSessionId) -> Option<cover::CoverSession> {
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cover event sent without its session: database pool");
            return None;
        }
    };
    match cover::get_session(&mut conn, id).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cover event sent without its session");
            None
        }
    }
}

/// The driver a `connection_init` payload authenticates, or why not.
async fn authenticate_init(
    core: &Core,
    payload: &serde_json::Value,
) -> async_graphql::Result<Viewer> {
    let header = ["authorization", "Authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()));
    let Some(header) = header else {
        return Err(coded("UNAUTHENTICATED", "Sign in to continue."));
    };
    let Credential::DriverToken(token) = bearer_credential(header) else {
        return Err(coded(
            "UNAUTHENTICATED",
            "Only a driver's token opens live status.",
        ));
    };
    let mut conn = core.pool.get().await.map_err(|_| {
        coded(
            "SERVICE_UNAVAILABLE",
            "Service unavailable; try again shortly.",
        )
    })?;
    match accounts::authenticate_driver(&mut conn, core.clock.as_ref(), &token).await {
        Ok(d) => Ok(Viewer(Principal::Driver(d))),
        Err(e) => match e.user_error() {
            Some(u) => Err(coded("UNAUTHENTICATED", u.message)),
            None => Err(coded(
                "SERVICE_UNAVAILABLE",
                "Service unavailable; try again shortly.",
            )),
        },
    }
}

/// `GET /graphql/ws`: the WebSocket endpoint of subscriptions.
pub async fn graphql_ws(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let core = state.core.clone();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId::from_header(None));
    let addr = ClientAddr::of(&req, &state.core.settings.http.trusted_proxies);
    GraphQLSubscription::new(state.schema.clone())
        .on_connection_init(move |value| async move {
            let viewer = authenticate_init(&core, &value).await?;
            let mut data = Data::default();
            data.insert(viewer);
            data.insert(request_id);
            data.insert(addr);
            data.insert(AccountsLoader::data_loader(core.pool.clone()));
            data.insert(CoverLoader::data_loader(core.pool.clone()));
            Ok(data)
        })
        .start(&req, payload)
}
