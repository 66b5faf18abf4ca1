//! The actix-web server: `/graphql`, the subscriptions' WebSocket `/graphql/ws`, `/healthz`,
//! `/readyz`, `/metrics`, the back office at `/admin` ([`crate::admin`]), and the routes of
//! [`crate::certificates`] and [`crate::webhooks`].

use crate::accounts::loaders::AccountsLoader;
use crate::context::{ClientAddr, RequestId, Viewer};
use crate::cover::loaders::CoverLoader;
use crate::limits;
use crate::metrics::Metrics;
use crate::schema::{ApiSchema, build_schema};
use crate::viewer::{self, Refusal};
use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Condition, Next, from_fn};
use actix_web::{App, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use async_graphql::{ErrorExtensionValues, Response, ServerError};
use futures::StreamExt;
use serde_json::json;
use shared::core::Core;
use shared::settings::Environment;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Shared by every request handler.
pub struct ApiState {
    /// Settings, pool, Redis, clock.
    pub core: Core,
    /// The executable schema.
    pub schema: ApiSchema,
    /// The same schema with a higher complexity limit, for the back office's own fixed
    /// documents (pages that show several lists at once); never reachable with client text.
    pub admin_schema: ApiSchema,
    /// Metrics registry.
    pub metrics: Metrics,
    /// What the development stand-ins for Twilio, Mailgun and a partner's server were sent
    /// (empty unless the inbox is on: [`crate::dev_inbox`]).
    pub dev_inbox: crate::dev_inbox::Inbox,
}

/// A server that is listening.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Stops the server.
    pub handle: ServerHandle,
    /// Resolves when the server has stopped.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `settings.http.bind` and starts serving in the background.
pub fn start_server(core: Core) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(&core.settings.http.bind)?;
    let addr = listener.local_addr()?;
    // Built once: a Stripe client sets up TLS, too costly to repeat per request. Resolvers
    // build their own when it is missing.
    let payments_env =
        match payments::PaymentsEnv::from_settings(&core.settings, core.clock.clone()) {
            Ok(env) => Some(env),
            Err(e) => {
                tracing::warn!(error = %e, "payments environment not built at start");
                None
            }
        };
    let finish = |settings: &shared::settings::GraphqlSettings| {
        let mut schema = build_schema(settings).data(core.clone());
        if let Some(env) = payments_env.clone() {
            schema = schema.data(env);
        }
        schema.finish()
    };
    let schema = finish(&core.settings.graphql);
    let mut admin_limits = core.settings.graphql.clone();
    admin_limits.max_complexity = admin_limits.max_complexity.saturating_mul(4);
    let admin_schema = finish(&admin_limits);
    let state = web::Data::new(ApiState {
        core: core.clone(),
        schema,
        admin_schema,
        metrics: Metrics::new()?,
        dev_inbox: crate::dev_inbox::Inbox::default(),
    });
    let workers = match core.settings.http.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // Without a DSN there is no Sentry client, and the middleware's per-request hub and copy of
    // the request would be pure overhead.
    let sentry = !core.settings.sentry.dsn.is_empty();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(request_context))
            .wrap(Condition::new(sentry, sentry_actix::Sentry::new()))
            .configure(routes)
    })
    .workers(workers)
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "api listening");
    Ok(RunningServer { addr, handle, task })
}

/// The routes, for the server and for tests that build an app in-process.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphql", web::post().to(graphql_post))
        // A WebSocket upgrade of `/graphql` is a subscription connection, as at `/graphql/ws`.
        .route(
            "/graphql",
            web::get()
                .guard(actix_web::guard::Header("upgrade", "websocket"))
                .to(crate::cover::subscription::graphql_ws),
        )
        .route("/graphql", web::get().to(graphql_get))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route(
            "/graphql/ws",
            web::get().to(crate::cover::subscription::graphql_ws),
        )
        .configure(crate::certificates::routes)
        .configure(crate::claims::photos::routes)
        .configure(crate::webhooks::routes)
        .configure(crate::finance::csv::routes)
        .configure(crate::finance::statements::pdf_route::routes)
        .configure(crate::admin::routes)
        .configure(crate::dev_inbox::routes);
}

async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = RequestId::from_header(
        req.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    req.extensions_mut().insert(request_id.clone());
    sentry::configure_scope(|scope| scope.set_tag("request_id", &request_id.0));
    let method = req.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.path());
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    if let Some(state) = res.request().app_data::<web::Data<ApiState>>() {
        state.metrics.observe(&method, &route, status, elapsed);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.0) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    span.in_scope(|| {
        tracing::info!(status, elapsed_ms = elapsed.as_millis() as u64, route = %route, "request finished");
    });
    Ok(res)
}

fn request_id(req: &HttpRequest) -> RequestId {
    req.extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId::from_header(None))
}

/// A GraphQL-shaped error response with a code, for requests refused before execution.
fn refusal(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    }))
}

async fn read_body(
    mut payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            &format!("the request body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            refusal(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body could not be read",
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn graphql_post(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match read_body(payload, &req, state.core.settings.http.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let code = if body.first() == Some(&b'[') {
                "BATCH_NOT_SUPPORTED"
            } else {
                "BAD_REQUEST"
            };
            return refusal(
                StatusCode::BAD_REQUEST,
                code,
                &format!("expected a JSON object with a `query`: {e}"),
            );
        }
    };
    execute(&state, &req, request, false).await
}

/// The GraphQL IDE (development only): an operation editor with variables and headers, the
/// answer, and the root fields read by introspection; one self-contained page.
const IDE_PAGE: &str = include_str!("ide.html");

async fn graphql_get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    params: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(query) = params.get("query") else {
        let gql = &state.core.settings.graphql;
        if gql.ide && state.core.settings.environment != Environment::Production {
            // The page is compiled in and loads nothing from elsewhere, so the IDE works offline.
            return HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(IDE_PAGE);
        }
        return refusal(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "GET /graphql needs a `query` parameter",
        );
    };
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(name) = params.get("operationName") {
        request = request.operation_name(name.clone());
    }
    if let Some(vars) = params.get("variables") {
        match serde_json::from_str::<serde_json::Value>(vars) {
            Ok(v) => request = request.variables(async_graphql::Variables::from_json(v)),
            Err(_) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "`variables` must be a JSON object",
                );
            }
        }
    }
    execute(&state, &req, request, true).await
}

async fn execute(
    state: &ApiState,
    req: &HttpRequest,
    mut request: async_graphql::Request,
    is_get: bool,
) -> HttpResponse {
    let gql = &state.core.settings.graphql;
    let facts = match limits::check_request(&mut request, gql.max_aliases) {
        Ok(f) => f,
        Err(r) => return refusal(StatusCode::OK, r.code, &r.message),
    };
    if is_get && facts.has_mutation {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "MUTATION_OVER_GET",
            "mutations must be sent with POST",
        );
    }
    let request_id = request_id(req);
    let viewer = match viewer::authenticate(&state.core, req).await {
        Ok(v) => v,
        Err(refused) => return auth_refusal(state, &request_id, refused),
    };
    let response = execute_as(state, req, viewer, request).await;
    let mut http = HttpResponse::Ok();
    http.content_type("application/json");
    for (name, value) in response.http_headers.iter() {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            http.append_header((name.as_str(), value));
        }
    }
    http.json(&response)
}

/// Runs a GraphQL request for `viewer` with the data every resolver expects (request id, client
/// address, loaders); errors labelled as on `/graphql`. For `/graphql` and for the back office's
/// pages, which are clients of the same schema.
pub(crate) async fn execute_as(
    state: &ApiState,
    req: &HttpRequest,
    viewer: Viewer,
    request: async_graphql::Request,
) -> async_graphql::Response {
    execute_on(&state.schema, state, req, viewer, request).await
}

/// [`execute_as`] on `schema` (the back office passes [`ApiState::admin_schema`]).
pub(crate) async fn execute_on(
    schema: &ApiSchema,
    state: &ApiState,
    req: &HttpRequest,
    viewer: Viewer,
    request: async_graphql::Request,
) -> async_graphql::Response {
    let request = request
        .data(request_id(req))
        .data(viewer)
        .data(ClientAddr::of(
            req,
            &state.core.settings.http.trusted_proxies,
        ))
        .data(AccountsLoader::data_loader(state.core.pool.clone()))
        .data(CoverLoader::data_loader(state.core.pool.clone()));
    let mut response = schema.execute(request).await;
    label_errors(&mut response);
    response
}

/// The response to a request refused before execution by [`viewer::authenticate`].
fn auth_refusal(state: &ApiState, request_id: &RequestId, refused: Refusal) -> HttpResponse {
    match refused {
        Refusal::Unauthenticated {
            reason,
            message,
            clear_cookie,
        } => {
            let mut res = HttpResponse::Unauthorized();
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            if clear_cookie {
                res.append_header((
                    header::SET_COOKIE,
                    viewer::clear_staff_session_cookie(
                        state.core.settings.accounts.staff_cookie_secure,
                    ),
                ));
            }
            res.json(json!({
                "errors": [{
                    "message": message,
                    "extensions": { "code": "UNAUTHENTICATED", "reason": reason }
                }]
            }))
        }
        Refusal::RateLimited {
            retry_after_secs,
            by,
            limit,
        } => {
            let (whose, scope) = match by {
                viewer::LimitedBy::Key => ("this API key", "API_KEY"),
                viewer::LimitedBy::Partner => ("your platform's API keys together", "PARTNER"),
            };
            HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                .json(json!({
                    "errors": [{
                        "message": format!("Too many requests: {whose} may make {limit} a minute. Try again in {retry_after_secs} seconds."),
                        "extensions": {
                            "code": "RATE_LIMITED",
                            "retryAfter": retry_after_secs,
                            "limit": limit,
                            "limitScope": scope
                        }
                    }]
                }))
        }
        Refusal::Unavailable(err) => {
            tracing::error!(request_id = %request_id, error = %format!("{err:#}"), "credential check failed");
            sentry::with_scope(
                |scope| scope.set_tag("request_id", &request_id.0),
                || sentry::integrations::anyhow::capture_anyhow(&err),
            );
            HttpResponse::ServiceUnavailable().json(json!({
                "errors": [{
                    "message": "Service unavailable; try again shortly.",
                    "extensions": { "code": "SERVICE_UNAVAILABLE", "requestId": request_id.0 }
                }]
            }))
        }
    }
}

/// Gives every error an `extensions.code` so clients can branch on it.
fn label_errors(response: &mut Response) {
    for err in &mut response.errors {
        if has_code(err) {
            continue;
        }
        let code = if err.message == "Query is nested too deep." {
            "QUERY_TOO_DEEP"
        } else if err.message == "Query is too complex." {
            "QUERY_TOO_COMPLEX"
        } else if err.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "BAD_USER_INPUT"
        };
        err.extensions
            .get_or_insert_with(ErrorExtensionValues::default)
            .set("code", code);
    }
}

fn has_code(err: &ServerError) -> bool {
    err.extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: whether PostgreSQL and Redis answer. The body names each check's outcome in a
/// fixed word (`ok`, `unavailable`, `failed`, `timed_out`); the errors themselves (host names,
/// user names, driver messages) go to the log, never to the caller.
async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let core = &state.core;
    let (pg, redis) = tokio::join!(check_postgres(core), check_redis(core));
    let ok = pg.is_ok() && redis.is_ok();
    let describe = |r: &Result<(), CheckFailure>| match r {
        Ok(()) => "ok",
        Err(e) => e.as_str(),
    };
    let body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "checks": { "postgres": describe(&pg), "redis": describe(&redis) },
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// How a readiness check failed, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckFailure {
    /// No connection could be had.
    Unavailable,
    /// Connected, but the probe failed.
    Failed,
    /// No answer within the check's time.
    TimedOut,
}

impl CheckFailure {
    fn as_str(self) -> &'static str {
        match self {
            CheckFailure::Unavailable => "unavailable",
            CheckFailure::Failed => "failed",
            CheckFailure::TimedOut => "timed_out",
        }
    }

    /// Logs `error` for `what` and returns `self`.
    fn logged(self, what: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(check = what, outcome = self.as_str(), error = %error, "readiness check failed");
        self
    }
}

async fn check_postgres(core: &Core) -> Result<(), CheckFailure> {
    use diesel_async::SimpleAsyncConnection;
    let check = async {
        let mut conn = core
            .pool
            .get()
            .await
            .map_err(|e| CheckFailure::Unavailable.logged("postgres", e))?;
        conn.batch_execute("SELECT 1")
            .await
            .map_err(|e| CheckFailure::Failed.logged("postgres", e))
    };
    tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .unwrap_or_else(|_| Err(CheckFailure::TimedOut.logged("postgres", "no answer in 2 s")))
}

async fn check_redis(core: &Core) -> Result<(), CheckFailure> {
    let check = async {
        let mut conn = core
            .redis
            .conn()
            .await
            .map_err(|e| CheckFailure::Unavailable.logged("redis", e))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| CheckFailure::Failed.logged("redis", e))
    };
    tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .unwrap_or_else(|_| Err(CheckFailure::TimedOut.logged("redis", "no answer in 2 s")))
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&state.core).await)
}
