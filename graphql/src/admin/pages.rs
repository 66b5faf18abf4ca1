//! The back office's pages and actions. Each handler: who is asking (and the role the page
//! needs), the GraphQL reads or the one mutation it runs as that user, the page or the redirect.

use super::render::{error_page, page, url_encode};
use super::{
    Staff, check_form, first_user_error, gql, same_origin, see_other, staff, staff_acting,
    staff_with,
};
use crate::context::Viewer;
use crate::http::{ApiState, execute_as};
use accounts::Role;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

pub(super) type Form = web::Form<HashMap<String, String>>;
pub(super) type Query = web::Query<HashMap<String, String>>;

/// Registers `/admin` and everything under it.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::chargebacks::routes(super::claims::routes(
        web::scope("/admin")
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/sign-in", web::get().to(sign_in_page))
            .route("/sign-in", web::post().to(sign_in))
            .route("/sign-out", web::post().to(sign_out))
            .route("/search", web::get().to(search))
            .route("/drivers/{id}", web::get().to(driver))
            .route("/drivers/{id}/refund", web::post().to(refund))
            .route(
                "/drivers/{id}/sessions/{session}/adjust",
                web::post().to(adjust_session),
            )
            .route("/drivers/{id}/enrolment", web::post().to(enrolment))
            .route(
                "/drivers/{id}/notifications/{notification}/resend",
                web::post().to(resend_notification),
            )
            .route(
                "/drivers/{id}/sign-out-everywhere",
                web::post().to(sign_out_everywhere),
            )
            .route("/jobs", web::get().to(jobs))
            .route("/jobs/{id}/retry", web::post().to(retry_job))
            .route("/jobs/{id}/discard", web::post().to(discard_job))
            .route("/partners", web::get().to(partners))
            .route("/partners", web::post().to(create_partner))
            .route("/partners/{id}", web::get().to(partner))
            .route("/partners/{id}/keys", web::post().to(create_key))
            .route(
                "/partners/{id}/keys/{key}/rotate",
                web::post().to(rotate_key),
            )
            .route(
                "/partners/{id}/keys/{key}/revoke",
                web::post().to(revoke_key),
            )
            .route(
                "/partners/{id}/deliveries/{delivery}/replay",
                web::post().to(replay_delivery),
            )
            .route("/products", web::get().to(products))
            .route("/products/versions/{id}", web::get().to(version))
            .route("/products/versions/{id}/publish", web::post().to(publish))
            .route("/finance", web::get().to(finance))
            .route("/finance/exports", web::post().to(request_export))
            .route(
                "/finance/exceptions/{id}/resolve",
                web::post().to(resolve_exception),
            ),
    )));
}

/// The page's context: the layout plus a notice or error carried by the redirect.
pub(super) fn context(staff: &Staff, q: &HashMap<String, String>, extra: Value) -> Value {
    let mut ctx = json!({
        "layout": staff.layout(),
        "notice": q.get("notice"),
        "error": q.get("error"),
    });
    if let (Some(map), Value::Object(more)) = (ctx.as_object_mut(), extra) {
        map.extend(more);
    }
    ctx
}

/// Back to `path` with a notice (`Ok`) or an error (`Err`) to show.
pub(super) fn back(path: &str, outcome: Result<String, String>) -> HttpResponse {
    let (key, text) = match outcome {
        Ok(t) => ("notice", t),
        Err(t) => ("error", t),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    see_other(&format!("{path}{sep}{key}={}", url_encode(&text)))
}

/// A path segment that must be one of our global ids (base64url): anything else is a 404.
pub(super) fn id_segment(s: &str) -> Result<String, HttpResponse> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(error_page(404, "There is no such page."))
    }
}

pub(super) fn reason_of(form: &HashMap<String, String>) -> Result<String, String> {
    let r = form.get("reason").map(|s| s.trim()).unwrap_or("");
    if r.is_empty() {
        return Err("Give a reason: it is kept in the audit log.".into());
    }
    if r.chars().count() > 500 {
        return Err("Keep the reason under 500 characters.".into());
    }
    Ok(r.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async fn sign_in_page(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    if staff(&state, &req).await.is_ok() {
        return see_other("/admin");
    }
    page(
        "sign_in.html",
        &json!({
            "next": safe_next(q.get("next").map(String::as_str)),
            "error": q.get("error"),
            // Absent is an empty field: a missing value would render as the text `none`.
            "email": q.get("email").map_or("", String::as_str),
        }),
    )
}

/// Where to go after signing in: a path inside the back office, else its home.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/admin") && !n.starts_with("//") && !n.contains("://") => {
            n.to_owned()
        }
        _ => "/admin".into(),
    }
}

const STAFF_SIGN_IN: &str = "mutation($email: String!, $password: String!) {
  staffSignIn(input: { email: $email, password: $password }) {
    staff { id } retryAfterSeconds userErrors { field code message } } }";

async fn sign_in(state: web::Data<ApiState>, req: HttpRequest, form: Form) -> HttpResponse {
    or_respond!(same_origin(&req));
    let email = form.get("email").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = safe_next(form.get("next").map(String::as_str));
    let again = |message: &str| {
        see_other(&format!(
            "/admin/sign-in?next={}&email={}&error={}",
            url_encode(&next),
            url_encode(&email),
            url_encode(message)
        ))
    };
    if email.trim().is_empty() || password.is_empty() {
        return again("Enter your email and password.");
    }
    // As nobody: a stale cookie must not stop a new sign-in.
    let request = async_graphql::Request::new(STAFF_SIGN_IN).variables(
        async_graphql::Variables::from_json(json!({ "email": email, "password": password })),
    );
    let response = execute_as(&state, &req, Viewer::ANONYMOUS, request).await;
    let data = serde_json::to_value(&response.data).unwrap_or(Value::Null);
    let payload = &data["staffSignIn"];
    if !response.errors.is_empty() || payload["staff"].is_null() {
        let message = match payload["userErrors"][0]["code"].as_str() {
            Some("RATE_LIMITED") => "Too many attempts; wait a few minutes and try again.",
            _ => "That email and password do not match an active staff account.",
        };
        return again(message);
    }
    let mut r = see_other(&next);
    copy_cookies(&response, &mut r);
    r
}

/// The cookies a resolver set (the staff session), onto the page's response.
fn copy_cookies(response: &async_graphql::Response, r: &mut HttpResponse) {
    for (name, value) in response.http_headers.iter() {
        if name.as_str().eq_ignore_ascii_case("set-cookie")
            && let Ok(v) = header::HeaderValue::from_bytes(value.as_bytes())
        {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

async fn sign_out(state: web::Data<ApiState>, req: HttpRequest, form: Form) -> HttpResponse {
    let staff = match staff(&state, &req).await {
        Ok(s) => s,
        Err(_) => return see_other("/admin/sign-in"),
    };
    or_respond!(check_form(&req, &staff, &form));
    let request = async_graphql::Request::new("mutation { staffSignOut { signedOut } }");
    let response = execute_as(&state, &req, staff.viewer.clone(), request).await;
    let mut r = see_other("/admin/sign-in");
    copy_cookies(&response, &mut r);
    r
}

// ---------------------------------------------------------------------------------------------
// Home and search

const QUEUES: &str =
    "{ jobQueues { name pending due queued running retrying dead oldestDueAgeSeconds } }";

async fn home(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff(&state, &req).await);
    let queues = if staff.has(Role::Ops) {
        or_page!(gql(&state, &req, &staff, QUEUES, json!({})).await)["jobQueues"].clone()
    } else {
        Value::Null
    };
    page(
        "home.html",
        &context(&staff, &q, json!({ "queues": queues })),
    )
}

const SEARCH: &str = "query($q: String!) { staffSearch(query: $q, first: 10) {
  kind id title detail driverId } }";

async fn search(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff(&state, &req).await);
    let text = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    if text.chars().count() < 2 {
        return back("/admin", Err("Search for at least 2 characters.".into()));
    }
    if text.chars().count() > 100 {
        return back("/admin", Err("Search for at most 100 characters.".into()));
    }
    let started = Instant::now();
    let data = or_page!(gql(&state, &req, &staff, SEARCH, json!({ "q": text })).await);
    let took_ms = started.elapsed().as_millis();
    // One hit: straight to it.
    if let Some([only]) = data["staffSearch"].as_array().map(Vec::as_slice) {
        if only["kind"] == "PARTNER" {
            if let Some(id) = only["id"].as_str() {
                return see_other(&format!("/admin/partners/{id}"));
            }
        } else if let Some(id) = only["driverId"].as_str() {
            return see_other(&format!("/admin/drivers/{id}"));
        }
    }
    page(
        "search.html",
        &context(
            &staff,
            &q,
            json!({ "q": text, "hits": data["staffSearch"], "took_ms": took_ms }),
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Drivers

const DRIVER: &str = "query($id: ID!) { node(id: $id) { ... on Driver {
  id phone name email dateOfBirth postcode licenceNumber licenceIssuedOn createdAt
  vehicles(first: 10) { edges { node { id vehicleType registration make model } } }
  enrolments { id status statusReason productName createdAt vehicle { registration }
    history { fromStatus toStatus reason actor occurredAt } }
  activeSession { id startedAt certificate { number } } } } }";

const DRIVER_SESSIONS: &str = "query($id: ID!, $after: String) { node(id: $id) { ... on Driver {
  coverSessions(first: 20, after: $after) { edges { node { id status source startedAt endedAt
    chargedAt certificate { number } charge { total { formatted } billedMinutes rule } } }
    pageInfo { hasNextPage endCursor } } } } }";

const DRIVER_ACTIVITY: &str = "query($id: ID!) { driverActivity(driverId: $id, first: 30) {
  notifications { id channel template status recipient subject bodyText failureReason createdAt
    sentAt deliveredAt resendable }
  auditEvents { occurredAt actorType actorId action subjectType subjectId reason } } }";

const DRIVER_WALLET: &str = "query($id: ID!) { driverWallet(driverId: $id) {
  balance { formatted }
  chargebacks { stripeDisputeId stripeStatus open evidenceDueBy withdrawn reinstated
    amount { formatted } }
  transactions(first: 30) { edges { node { kind amount { formatted } description at } } }
  payments(first: 15) { edges { node { id kind status createdAt amount { minor formatted }
    refundedAmount { minor formatted } refunds { amount { formatted } status reason } } } } } }";

async fn driver(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: Query,
) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let id = or_respond!(id_segment(&path));
    let profile = or_page!(gql(&state, &req, &staff, DRIVER, json!({ "id": id })).await);
    let driver = &profile["node"];
    if driver.get("phone").is_none() {
        return error_page(404, "There is no such driver.");
    }
    let sessions = or_page!(
        gql(
            &state,
            &req,
            &staff,
            DRIVER_SESSIONS,
            json!({ "id": id, "after": q.get("after") }),
        )
        .await
    );
    let wallet = or_page!(gql(&state, &req, &staff, DRIVER_WALLET, json!({ "id": id })).await);
    let wallet = &wallet["driverWallet"];
    let activity = or_page!(gql(&state, &req, &staff, DRIVER_ACTIVITY, json!({ "id": id })).await);
    let activity = &activity["driverActivity"];
    let sessions = &sessions["node"]["coverSessions"];
    let timeline = timeline(driver, sessions, wallet, activity);
    let payments: Vec<Value> = wallet["payments"]["edges"]
        .as_array()
        .map(|a| a.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default();
    page(
        "driver.html",
        &context(
            &staff,
            &q,
            json!({
                "driver": driver,
                "wallet": {
                    "balance": wallet["balance"],
                    "payments": payments,
                    "chargebacks": wallet["chargebacks"],
                },
                "timeline": timeline,
                "notifications": activity["notifications"],
                "sessions": sessions["edges"],
                "sessions_next": if sessions["pageInfo"]["hasNextPage"] == true {
                    sessions["pageInfo"]["endCursor"].clone()
                } else {
                    Value::Null
                },
                // A fresh key per page load: a double-submitted form refunds once.
                "refund_key": uuid::Uuid::new_v4().simple().to_string(),
            }),
        ),
    )
}

/// Sessions, wallet movements, enrolment changes, messages and audit entries on one time line,
/// newest first.
fn timeline(driver: &Value, sessions: &Value, wallet: &Value, activity: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    for e in sessions["edges"].as_array().into_iter().flatten() {
        let s = &e["node"];
        let cert = s["certificate"]["number"].as_str().unwrap_or("");
        rows.push(json!({
            "at": s["startedAt"], "what": "cover started",
            "detail": format!("{cert} ({})", s["source"].as_str().unwrap_or("").to_lowercase()),
        }));
        if let Some(end) = s["endedAt"].as_str() {
            let charge = &s["charge"];
            rows.push(json!({
                "at": end, "what": "cover ended",
                "detail": format!("{cert}: {} minutes billed ({})",
                    charge["billedMinutes"], charge["rule"].as_str().unwrap_or("").to_lowercase()),
                "amount": charge["total"]["formatted"],
            }));
        }
    }
    for e in wallet["transactions"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let t = &e["node"];
        rows.push(json!({
            "at": t["at"],
            "what": t["kind"].as_str().unwrap_or("").to_lowercase().replace('_', " "),
            "detail": t["description"],
            "amount": t["amount"]["formatted"],
        }));
    }
    for en in driver["enrolments"].as_array().into_iter().flatten() {
        for h in en["history"].as_array().into_iter().flatten() {
            rows.push(json!({
                "at": h["occurredAt"],
                "what": format!("enrolment {}", h["toStatus"].as_str().unwrap_or("").to_lowercase()),
                "detail": format!("{}: {} (by {})", en["productName"].as_str().unwrap_or(""),
                    h["reason"].as_str().unwrap_or(""), h["actor"].as_str().unwrap_or("")),
            }));
        }
    }
    for n in activity["notifications"].as_array().into_iter().flatten() {
        rows.push(json!({
            "at": n["createdAt"],
            "what": format!("{} {}", n["channel"].as_str().unwrap_or(""), n["status"].as_str().unwrap_or("")),
            "detail": format!("{} to {}", n["template"].as_str().unwrap_or("").replace('_', " "),
                n["recipient"].as_str().unwrap_or("")),
        }));
    }
    for a in activity["auditEvents"].as_array().into_iter().flatten() {
        // Enrolment changes are already there from the enrolment's own history.
        if a["subjectType"] == "enrolment" {
            continue;
        }
        let by = match a["actorType"].as_str() {
            Some("staff") => format!("staff {}", a["actorId"].as_str().unwrap_or("")),
            Some(other) => other.to_owned(),
            None => String::new(),
        };
        let reason = a["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        rows.push(json!({
            "at": a["occurredAt"],
            "what": "audit",
            "detail": format!("{} by {by}{reason}", a["action"].as_str().unwrap_or("")),
        }));
    }
    rows.sort_by(|a, b| {
        b["at"]
            .as_str()
            .unwrap_or("")
            .cmp(a["at"].as_str().unwrap_or(""))
    });
    rows
}

/// `"12.50"`, `"£12.50"`, `"12"` → 1250 pence; blank → `None` (everything left).
pub(super) fn parse_pounds(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim().trim_start_matches('£').trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("“{s}” is not an amount in pounds, like 12.50.");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 2 {
        return Err(bad());
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let pounds: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let pence: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let total = pounds
        .checked_mul(100)
        .and_then(|p| p.checked_add(pence))
        .ok_or_else(bad)?;
    if total <= 0 {
        return Err("A refund must be more than £0.00.".into());
    }
    Ok(Some(total))
}

const PAYMENT: &str = "query($id: ID!) { node(id: $id) { ... on Payment {
  id amount { minor } refundedAmount { minor } driver { id } } } }";

const REFUND: &str = "mutation($input: RefundPaymentInput!) { refundPayment(input: $input) {
  refund { amount { formatted } status } userErrors { field code message } } }";

async fn refund(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff(&state, &req).await);
    if !staff.has(Role::Ops) && !staff.has(Role::Finance) {
        return error_page(403, "Refunds need the ops or finance role.");
    }
    or_respond!(check_form(&req, &staff, &form));
    let driver_id = or_respond!(id_segment(&path));
    let here = format!("/admin/drivers/{driver_id}");
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let amount = match parse_pounds(form.get("amount").map(String::as_str).unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return back(&here, Err(e)),
    };
    let payment_id = form.get("payment").cloned().unwrap_or_default();
    // The page showed an amount already refunded; if it has changed, the agent decides again.
    let current = or_page!(gql(&state, &req, &staff, PAYMENT, json!({ "id": payment_id })).await);
    let p = &current["node"];
    if p["driver"]["id"].as_str() != Some(driver_id.as_str()) {
        return back(&here, Err("That payment is not this driver's.".into()));
    }
    let seen: Option<i64> = form.get("seen_refunded").and_then(|s| s.parse().ok());
    if seen != p["refundedAmount"]["minor"].as_i64() {
        return back(
            &here,
            Err("This payment was refunded by someone else since the page loaded; check the amounts and try again.".into()),
        );
    }
    let key = form
        .get("key")
        .filter(|k| !k.is_empty() && k.len() <= 100)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            REFUND,
            json!({ "input": {
                "paymentId": payment_id, "amount": amount, "reason": reason,
                "idempotencyKey": format!("admin:{key}"),
            } }),
        )
        .await
    );
    let payload = &data["refundPayment"];
    match first_user_error(payload) {
        Some(e) => back(&here, Err(e)),
        None => back(
            &here,
            Ok(format!(
                "Refund of {} {}.",
                payload["refund"]["amount"]["formatted"]
                    .as_str()
                    .unwrap_or(""),
                payload["refund"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
            )),
        ),
    }
}

const ENROLMENT_STATUS: &str =
    "query($id: ID!) { node(id: $id) { ... on Enrolment { id status } } }";
const SUSPEND: &str =
    "mutation($input: ChangeEnrolmentStatusInput!) { suspendEnrolment(input: $input) {
  enrolment { status } changed userErrors { field code message } } }";
const REACTIVATE: &str =
    "mutation($input: ChangeEnrolmentStatusInput!) { reactivateEnrolment(input: $input) {
  enrolment { status } changed userErrors { field code message } } }";

async fn enrolment(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let here = format!("/admin/drivers/{}", or_respond!(id_segment(&path)));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let id = form.get("enrolment").cloned().unwrap_or_default();
    let doc = match form.get("action").map(String::as_str) {
        Some("suspend") => SUSPEND,
        Some("reactivate") => REACTIVATE,
        _ => return back(&here, Err("Choose suspend or reactivate.".into())),
    };
    let now = or_page!(gql(&state, &req, &staff, ENROLMENT_STATUS, json!({ "id": id })).await);
    if now["node"]["status"].as_str() != form.get("seen_status").map(String::as_str) {
        return back(
            &here,
            Err(
                "This enrolment changed since the page loaded; look at it again before acting."
                    .into(),
            ),
        );
    }
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            doc,
            json!({ "input": { "enrolmentId": id, "reason": reason } }),
        )
        .await
    );
    let payload = data
        .as_object()
        .and_then(|m| m.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    match first_user_error(&payload) {
        Some(e) => back(&here, Err(e)),
        None => back(
            &here,
            Ok(format!(
                "Enrolment now {}.",
                payload["enrolment"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
            )),
        ),
    }
}

const RESEND: &str =
    "mutation($input: ResendNotificationInput!) { resendNotification(input: $input) {
  notificationId replayed userErrors { field code message } } }";

async fn resend_notification(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let (driver, notification) = path.into_inner();
    let here = format!("/admin/drivers/{}", or_respond!(id_segment(&driver)));
    let notification = or_respond!(id_segment(&notification));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let key = form
        .get("key")
        .filter(|k| !k.is_empty() && k.len() <= 100)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            RESEND,
            json!({ "input": { "notificationId": notification, "reason": reason, "idempotencyKey": key } }),
        )
        .await
    );
    let payload = &data["resendNotification"];
    match first_user_error(payload) {
        Some(e) => back(&here, Err(e)),
        None if payload["replayed"] == true => {
            back(&here, Ok("Already sent again from this page.".into()))
        }
        None => back(&here, Ok("Message queued to be sent again.".into())),
    }
}

const ADJUST: &str =
    "mutation($input: AdjustSessionChargeInput!) { adjustSessionCharge(input: $input) {
  refund { amount { formatted } status } userErrors { field code message } } }";

async fn adjust_session(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff(&state, &req).await);
    if !staff.has(Role::Ops) && !staff.has(Role::Finance) {
        return error_page(403, "Adjusting a charge needs the ops or finance role.");
    }
    or_respond!(check_form(&req, &staff, &form));
    let (driver, session) = path.into_inner();
    let here = format!("/admin/drivers/{}", or_respond!(id_segment(&driver)));
    let session = or_respond!(id_segment(&session));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let amount = match parse_pounds(form.get("amount").map(String::as_str).unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return back(&here, Err(e)),
    };
    let key = form
        .get("key")
        .filter(|k| !k.is_empty() && k.len() <= 100)
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            ADJUST,
            json!({ "input": {
                "sessionId": session, "refundAmount": amount, "reason": reason,
                "idempotencyKey": format!("admin-adjust:{key}"),
            } }),
        )
        .await
    );
    let payload = &data["adjustSessionCharge"];
    match first_user_error(payload) {
        Some(e) => back(&here, Err(e)),
        None => back(
            &here,
            Ok(format!(
                "Charge lowered: {} back to the wallet.",
                payload["refund"]["amount"]["formatted"]
                    .as_str()
                    .unwrap_or("")
            )),
        ),
    }
}

const SIGN_OUT_EVERYWHERE: &str = "mutation($input: SignDriverOutEverywhereInput!) {
  signDriverOutEverywhere(input: $input) { sessionsEnded userErrors { field code message } } }";

async fn sign_out_everywhere(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let id = or_respond!(id_segment(&path));
    let here = format!("/admin/drivers/{id}");
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            SIGN_OUT_EVERYWHERE,
            json!({ "input": { "driverId": id, "reason": reason } }),
        )
        .await
    );
    let payload = &data["signDriverOutEverywhere"];
    match first_user_error(payload) {
        Some(e) => back(&here, Err(e)),
        None => back(
            &here,
            Ok(format!(
                "Signed out of {} device(s).",
                payload["sessionsEnded"]
            )),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs

const JOBS: &str = "query($filter: JobsFilterInput, $after: String) {
  jobQueues { name pending due queued running retrying dead }
  jobs(first: 25, after: $after, filter: $filter) { edges { node { id jobType queue status
    attempts maxAttempts lastError createdAt canRetry canDiscard } }
    pageInfo { hasNextPage endCursor } } }";

async fn jobs(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let queue = q.get("queue").filter(|s| !s.is_empty()).cloned();
    let errors = q.get("errors").is_some();
    let status = if errors { None } else { Some("DEAD") };
    let mut filter = json!({ "queue": queue, "status": status });
    if errors {
        filter["hasError"] = json!(true);
    }
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            JOBS,
            json!({ "filter": filter, "after": q.get("after") }),
        )
        .await
    );
    let mut query_base = String::new();
    if let Some(qn) = &queue {
        query_base.push_str(&format!("queue={}&", url_encode(qn)));
    }
    if errors {
        query_base.push_str("errors=1&");
    }
    page(
        "jobs.html",
        &context(
            &staff,
            &q,
            json!({
                "queues": data["jobQueues"], "jobs": data["jobs"], "queue": queue,
                "status": status, "query_base": query_base,
            }),
        ),
    )
}

async fn retry_job(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let id = or_respond!(id_segment(&path));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back("/admin/jobs", Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $reason: String!) { retryJob(input: { jobId: $id, reason: $reason }) { job { jobType status } userErrors { field code message } } }",
            json!({ "id": id, "reason": reason }),
        )
        .await
    );
    let payload = &data["retryJob"];
    back(
        "/admin/jobs",
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "{} queued again.",
                payload["job"]["jobType"].as_str().unwrap_or("The job")
            )),
        },
    )
}

async fn discard_job(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let id = or_respond!(id_segment(&path));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back("/admin/jobs", Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $reason: String!) { discardJob(input: { jobId: $id, reason: $reason }) { job { jobType status } userErrors { field code message } } }",
            json!({ "id": id, "reason": reason }),
        )
        .await
    );
    let payload = &data["discardJob"];
    back(
        "/admin/jobs",
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "{} discarded.",
                payload["job"]["jobType"].as_str().unwrap_or("The job")
            )),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Partners

async fn partners(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "{ partners { id name status createdAt apiKeys { id } } }",
            json!({}),
        )
        .await
    );
    page(
        "partners.html",
        &context(&staff, &q, json!({ "partners": data["partners"] })),
    )
}

const PARTNER: &str = "query($id: ID!) { node(id: $id) { ... on Partner { id name status createdAt
  apiKeys { id prefix testMode scopes createdAt expiresAt lastUsedAt revokedAt } } }
  webhookEndpoints(partnerId: $id) { id url eventTypes enabled testMode timeoutMs } }";

const DELIVERIES: &str =
    "query($endpoint: ID!) { webhookDeliveries(endpointId: $endpoint, first: 10) {
  edges { node { id eventType eventId status attemptCount replays createdAt
    attempts { statusCode error latencyMs } } } } }";

async fn partner(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: Query,
) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let id = or_respond!(id_segment(&path));
    partner_page(&state, &req, &staff, &id, &q, json!({})).await
}

/// The partner's page; `extra` adds to its context (a key secret to show once).
async fn partner_page(
    state: &ApiState,
    req: &HttpRequest,
    staff: &Staff,
    id: &str,
    q: &HashMap<String, String>,
    extra: Value,
) -> HttpResponse {
    let data = or_page!(gql(state, req, staff, PARTNER, json!({ "id": id })).await);
    if data["node"].get("name").is_none() {
        return error_page(404, "There is no such partner.");
    }
    let mut endpoints = Vec::new();
    for ep in data["webhookEndpoints"].as_array().into_iter().flatten() {
        let deliveries = or_page!(
            gql(
                state,
                req,
                staff,
                DELIVERIES,
                json!({ "endpoint": ep["id"] }),
            )
            .await
        );
        let mut ep = ep.clone();
        ep["deliveries"] = deliveries["webhookDeliveries"].clone();
        endpoints.push(ep);
    }
    let mut ctx = context(
        staff,
        q,
        json!({ "partner": data["node"], "endpoints": endpoints, "scopes": SCOPES }),
    );
    if let (Some(map), Value::Object(more)) = (ctx.as_object_mut(), extra) {
        map.extend(more);
    }
    page("partner.html", &ctx)
}

/// The API key scopes, as the schema names them.
const SCOPES: [&str; 4] = [
    "DRIVERS_LINK",
    "SHIFTS_WRITE",
    "COVER_READ",
    "WEBHOOKS_MANAGE",
];

async fn create_partner(state: web::Data<ApiState>, req: HttpRequest, form: Form) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let name = form.get("name").map(|n| n.trim()).unwrap_or("");
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back("/admin/partners", Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($name: String!, $reason: String!) { createPartner(input: { name: $name, reason: $reason }) { partner { id name } userErrors { field code message } } }",
            json!({ "name": name, "reason": reason }),
        )
        .await
    );
    let payload = &data["createPartner"];
    match (first_user_error(payload), payload["partner"]["id"].as_str()) {
        (None, Some(id)) => back(
            &format!("/admin/partners/{id}"),
            Ok(format!("{name} created. Issue its first API key below.")),
        ),
        (e, _) => back(
            "/admin/partners",
            Err(e.unwrap_or_else(|| "Not created.".into())),
        ),
    }
}

/// A form whose fields may repeat (checkboxes): the fields, and the first value of each.
type ListForm = web::Form<Vec<(String, String)>>;

fn first_values(form: &[(String, String)]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in form {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    map
}

async fn create_key(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: ListForm,
) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let fields = first_values(&form);
    or_respond!(check_form(&req, &staff, &fields));
    let id = or_respond!(id_segment(&path));
    let here = format!("/admin/partners/{id}");
    let scopes: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .filter(|v| SCOPES.contains(v))
        .collect();
    if scopes.is_empty() {
        return back(&here, Err("Choose at least one scope for the key.".into()));
    }
    let test_mode = fields.get("mode").map(String::as_str) == Some("test");
    let reason = match reason_of(&fields) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($input: CreatePartnerApiKeyInput!) { createPartnerApiKey(input: $input) { apiKey { prefix } secret userErrors { field code message } } }",
            json!({ "input": { "partnerId": id, "scopes": scopes, "testMode": test_mode, "reason": reason } }),
        )
        .await
    );
    let payload = &data["createPartnerApiKey"];
    if let Some(e) = first_user_error(payload) {
        return back(&here, Err(e));
    }
    // The secret is shown on this response only: never in a URL, never stored.
    partner_page(
        &state,
        &req,
        &staff,
        &id,
        &HashMap::new(),
        json!({ "new_secret": payload["secret"], "notice": "Key created. Copy it now: it is not shown again." }),
    )
    .await
}

async fn rotate_key(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let (id, key) = path.into_inner();
    let id = or_respond!(id_segment(&id));
    let key = or_respond!(id_segment(&key));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&format!("/admin/partners/{id}"), Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($key: ID!, $reason: String!) { rotatePartnerApiKey(input: { keyId: $key, overlapHours: 24, reason: $reason }) { apiKey { prefix } secret userErrors { field code message } } }",
            json!({ "key": key, "reason": reason }),
        )
        .await
    );
    let payload = &data["rotatePartnerApiKey"];
    if let Some(e) = first_user_error(payload) {
        return back(&format!("/admin/partners/{id}"), Err(e));
    }
    partner_page(
        &state,
        &req,
        &staff,
        &id,
        &HashMap::new(),
        json!({ "new_secret": payload["secret"], "notice": "Key replaced; the old one works for 24 more hours. Copy the new one now: it is not shown again." }),
    )
    .await
}

async fn revoke_key(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let (id, key) = path.into_inner();
    let id = or_respond!(id_segment(&id));
    let key = or_respond!(id_segment(&key));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&format!("/admin/partners/{id}"), Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($key: ID!, $reason: String!) { revokePartnerApiKey(input: { keyId: $key, reason: $reason }) { apiKey { prefix revokedAt } userErrors { field code message } } }",
            json!({ "key": key, "reason": reason }),
        )
        .await
    );
    let payload = &data["revokePartnerApiKey"];
    back(
        &format!("/admin/partners/{id}"),
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "Key {}… revoked.",
                payload["apiKey"]["prefix"].as_str().unwrap_or("")
            )),
        },
    )
}

async fn replay_delivery(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let (partner, delivery) = path.into_inner();
    let partner = or_respond!(id_segment(&partner));
    let delivery = or_respond!(id_segment(&delivery));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&format!("/admin/partners/{partner}"), Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $reason: String!) { replayWebhookDelivery(input: { deliveryId: $id, reason: $reason }) { delivery { eventType replays } userErrors { field code message } } }",
            json!({ "id": delivery, "reason": reason }),
        )
        .await
    );
    let payload = &data["replayWebhookDelivery"];
    back(
        &format!("/admin/partners/{partner}"),
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "Delivery of {} queued again (replay {}).",
                payload["delivery"]["eventType"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase(),
                payload["delivery"]["replays"]
            )),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Products

async fn products(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "{ products { id code name } }",
            json!({})
        )
        .await
    );
    let mut products = Vec::new();
    for p in data["products"].as_array().into_iter().flatten() {
        let versions = or_page!(
            gql(
                &state,
                &req,
                &staff,
                "query($id: ID!) { productVersions(productId: $id) { id versionNumber status createdAt publishedAt } }",
                json!({ "id": p["id"] }),
            )
            .await
        );
        let mut p = p.clone();
        p["versions"] = versions["productVersions"].clone();
        products.push(p);
    }
    page(
        "products.html",
        &context(&staff, &q, json!({ "products": products })),
    )
}

const CHECK: &str = "query($id: ID!) { checkProductVersion(versionId: $id) {
  publishable passedCount failedCount problems { field code message }
  cases { name passed expected actual }
  productVersion { id versionNumber status termsJson } } }";

async fn version(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: Query,
) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Ops).await);
    let id = or_respond!(id_segment(&path));
    let data = or_page!(gql(&state, &req, &staff, CHECK, json!({ "id": id })).await);
    let check = &data["checkProductVersion"];
    if check.is_null() {
        return error_page(404, "There is no such product version.");
    }
    let terms =
        serde_json::to_string_pretty(&check["productVersion"]["termsJson"]).unwrap_or_default();
    page(
        "version.html",
        &context(&staff, &q, json!({ "check": check, "terms": terms })),
    )
}

async fn publish(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Ops, &form).await);
    let id = or_respond!(id_segment(&path));
    let here = format!("/admin/products/versions/{id}");
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back(&here, Err(e)),
    };
    let now = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "query($id: ID!) { productVersion(versionId: $id) { status } }",
            json!({ "id": id }),
        )
        .await
    );
    if now["productVersion"]["status"].as_str() != form.get("seen_status").map(String::as_str) {
        return back(
            &here,
            Err("This version changed since the page loaded; look at it again.".into()),
        );
    }
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $reason: String!) { publishProductVersion(input: { versionId: $id, reason: $reason }) {
               productVersion { versionNumber status } failingCases { name }
               userErrors { field code message } } }",
            json!({ "id": id, "reason": reason }),
        )
        .await
    );
    let payload = &data["publishProductVersion"];
    back(
        &here,
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "Version {} published.",
                payload["productVersion"]["versionNumber"]
            )),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Finance

const FINANCE: &str = "query($day: Date!, $after: String) {
  reconciliationSummary(day: $day) { day finishedAt newExceptions
    statuses { status currency count stripeAmount ledgerAmount } }
  financeExceptions(status: OPEN, first: 20, after: $after) { edges { node { id kind day
    stripeId stripeAmount ledgerAmount detail } } pageInfo { hasNextPage endCursor } }
  financeExports(first: 10) { id kind period status percent rowsDone rowsTotal lastError createdAt
    downloadPath } }";

const BORDEREAU_TOTALS: &str = "query($month: String!) { bordereau(month: $month, first: 0) {
  month lineCount totals { currency charges refunds grossPremium commission ipt netPremiumDue } }
  iptPayable(from: $month, to: $month) { month currency charged refunded payable } }";

async fn finance(state: web::Data<ApiState>, req: HttpRequest, q: Query) -> HttpResponse {
    let staff = or_respond!(staff_with(&state, &req, Role::Finance).await);
    let yesterday = (state.core.clock.now() - chrono::Duration::days(1)).date_naive();
    let day = q
        .get("day")
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or(yesterday);
    let month = q
        .get("month")
        .filter(|m| finance::period::Month::parse("month", m).is_ok())
        .cloned()
        .unwrap_or_else(|| yesterday.format("%Y-%m").to_string());
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            FINANCE,
            json!({ "day": day.to_string(), "after": q.get("after") }),
        )
        .await
    );
    let (bordereau, ipt, report_error) = match gql(
        &state,
        &req,
        &staff,
        BORDEREAU_TOTALS,
        json!({ "month": month }),
    )
    .await
    {
        Ok(b) => (b["bordereau"].clone(), b["iptPayable"].clone(), Value::Null),
        Err(super::GqlError::Other(m)) => (Value::Null, Value::Null, json!(m)),
        Err(e) => return e.into_page(),
    };
    page(
        "finance.html",
        &context(
            &staff,
            &q,
            json!({
                "day": day.to_string(), "month": month,
                "summary": data["reconciliationSummary"],
                "exceptions": data["financeExceptions"],
                "bordereau": bordereau, "ipt": ipt, "report_error": report_error,
                "exports": data["financeExports"],
                "building": data["financeExports"].as_array().is_some_and(|a| a.iter().any(|e| {
                    e["status"] == "queued" || e["status"] == "running"
                })),
            }),
        ),
    )
}

async fn request_export(state: web::Data<ApiState>, req: HttpRequest, form: Form) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Finance, &form).await);
    let month = form.get("month").map(|m| m.trim()).unwrap_or("");
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($month: String!) { requestBordereauExport(input: { month: $month }) {
               export { period } userErrors { field code message } } }",
            json!({ "month": month }),
        )
        .await
    );
    let payload = &data["requestBordereauExport"];
    back(
        &format!("/admin/finance?month={}", url_encode(month)),
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok(format!(
                "The bordereau of {} is being built; it appears below when ready.",
                payload["export"]["period"].as_str().unwrap_or(month)
            )),
        },
    )
}

async fn resolve_exception(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: Form,
) -> HttpResponse {
    let staff = or_respond!(staff_acting(&state, &req, Role::Finance, &form).await);
    let id = or_respond!(id_segment(&path));
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(e) => return back("/admin/finance", Err(e)),
    };
    let data = or_page!(
        gql(
            &state,
            &req,
            &staff,
            "mutation($id: ID!, $reason: String!) { resolveFinanceException(input: { id: $id, reason: $reason }) { exception { status } userErrors { field code message } } }",
            json!({ "id": id, "reason": reason }),
        )
        .await
    );
    let payload = &data["resolveFinanceException"];
    back(
        "/admin/finance",
        match first_user_error(payload) {
            Some(e) => Err(e),
            None => Ok("Exception resolved.".into()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pounds_are_parsed_to_pence_exactly() {
        assert_eq!(parse_pounds(""), Ok(None));
        assert_eq!(parse_pounds("12.5"), Ok(Some(1250)));
        assert_eq!(parse_pounds("£12.50"), Ok(Some(1250)));
        assert_eq!(parse_pounds("7"), Ok(Some(700)));
        assert_eq!(parse_pounds(".05"), Ok(Some(5)));
        assert!(parse_pounds("12.505").is_err());
        assert!(parse_pounds("-3").is_err());
        assert!(parse_pounds("0").is_err());
        assert!(parse_pounds("1e3").is_err());
        assert!(parse_pounds("99999999999999999999").is_err());
    }

    #[test]
    fn only_back_office_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/admin/jobs?queue=x")),
            "/admin/jobs?queue=x"
        );
        assert_eq!(safe_next(Some("https://evil.example/admin")), "/admin");
        assert_eq!(safe_next(Some("//evil.example")), "/admin");
        assert_eq!(safe_next(None), "/admin");
    }
}
