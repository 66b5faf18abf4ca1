//! The back office at `/admin`: server-rendered pages for ops and finance staff.
//!
//! The pages are a client of the GraphQL schema, run in-process as the signed-in staff user
//! ([`crate::http::execute_on`], on the copy of the schema whose complexity limit fits the pages'
//! own fixed documents): every read and every action goes through the same resolvers,
//! guards, validation and audit log as the API, so the back office cannot do what the role could
//! not do over `/graphql`. What this module adds is what a browser needs:
//!
//! - sign-in with the staff session cookie (`staffSignIn`), sign-out;
//! - a page-level role check before any work, so a role that lacks the right sees a 403 page;
//! - CSRF protection on every form: a token bound to the staff session (an HMAC of the session
//!   id keyed with the login-code pepper, a server secret) in a hidden field, and a same-origin check of `Origin` (or
//!   `Referer`) when the browser sends one; the cookie is `SameSite=Strict` besides;
//! - optimistic checks: forms carry what the page showed (a status, an amount refunded) and an
//!   action on a record that changed since is refused with a message, not applied;
//! - after an action, a redirect (303) to the page with a notice or the error to show.
//!
//! Templates are [minijinja] files compiled into the binary, auto-escaped as HTML.

// Handlers return the page that replaces theirs (a redirect, a 403) as the error: one per
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

/// Unwraps a `Result<_, HttpResponse>`, answering with the response.
macro_rules! or_respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

/// Unwraps a GraphQL result, answering with its error page.
macro_rules! or_page {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return e.into_page(),
        }
    };
}

mod chargebacks;
mod claims;
mod pages;
mod render;

pub use pages::routes;

use crate::context::Viewer;
use crate::http::{ApiState, execute_on};
use crate::viewer::{self, Refusal};
use accounts::{Principal, Role, StaffPrincipal};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The signed-in staff user of a back-office request.
pub(crate) struct Staff {
    viewer: Viewer,
    principal: StaffPrincipal,
    csrf: String,
}

impl Staff {
    /// Whether the user holds `role` (admin holds every role).
    pub(crate) fn has(&self, role: Role) -> bool {
        self.principal.has(role)
    }

    /// What every page's layout shows.
    pub(crate) fn layout(&self) -> Value {
        json!({
            "role": self.principal.role.as_str(),
            "csrf": self.csrf,
            "ops": self.has(Role::Ops),
            "finance": self.has(Role::Finance),
        })
    }
}

/// A 303 redirect.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn csrf_token(state: &ApiState, principal: &StaffPrincipal) -> String {
    let key = state.core.settings.accounts.login_code_pepper.expose();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(b"admin-csrf:");
    mac.update(principal.session_id.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The staff user of the request, or the response that replaces the page: to sign in when
/// there is no staff session, a 403 page for drivers' and partners' credentials.
pub(crate) async fn staff(state: &ApiState, req: &HttpRequest) -> Result<Staff, HttpResponse> {
    let here = req
        .uri()
        .path_and_query()
        .map_or("/admin", |p| p.as_str())
        .to_owned();
    let to_sign_in = || {
        see_other(&format!(
            "/admin/sign-in?next={}",
            render::url_encode(&here)
        ))
    };
    let viewer = match viewer::authenticate(&state.core, req).await {
        Ok(v) => v,
        Err(Refusal::Unauthenticated { clear_cookie, .. }) => {
            let mut r = to_sign_in();
            if clear_cookie
                && let Ok(v) = header::HeaderValue::from_str(&viewer::clear_staff_session_cookie(
                    state.core.settings.accounts.staff_cookie_secure,
                ))
            {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            return Err(r);
        }
        Err(Refusal::RateLimited {
            retry_after_secs, ..
        }) => {
            return Err(HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                .finish());
        }
        Err(Refusal::Unavailable(e)) => {
            tracing::error!(error = %format!("{e:#}"), "admin: credential check failed");
            return Err(render::error_page(
                503,
                "The service is unavailable; try again shortly.",
            ));
        }
    };
    match viewer.principal().clone() {
        Principal::Staff(principal) => {
            let csrf = csrf_token(state, &principal);
            Ok(Staff {
                viewer,
                principal,
                csrf,
            })
        }
        Principal::Anonymous => Err(to_sign_in()),
        _ => Err(render::error_page(
            403,
            "The back office is for ShiftCover staff.",
        )),
    }
}

/// [`staff`], then a check that the user holds `role` (a 403 page otherwise).
pub(crate) async fn staff_with(
    state: &ApiState,
    req: &HttpRequest,
    role: Role,
) -> Result<Staff, HttpResponse> {
    let staff = staff(state, req).await?;
    if !staff.has(role) {
        return Err(render::error_page(
            403,
            &format!(
                "This needs the {} role; you are signed in as {}.",
                role.as_str(),
                staff.principal.role.as_str()
            ),
        ));
    }
    Ok(staff)
}

/// The start of every action: a staff user holding `role` ([`staff_with`]) who sent the form
/// from one of our pages ([`check_form`]).
pub(crate) async fn staff_acting(
    state: &ApiState,
    req: &HttpRequest,
    role: Role,
    form: &std::collections::HashMap<String, String>,
) -> Result<Staff, HttpResponse> {
    let staff = staff_with(state, req, role).await?;
    check_form(req, &staff, form)?;
    Ok(staff)
}

/// Checks a form post: its CSRF token, and when the browser says where it comes from, that it
/// is this site.
pub(crate) fn check_form(
    req: &HttpRequest,
    staff: &Staff,
    form: &std::collections::HashMap<String, String>,
) -> Result<(), HttpResponse> {
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    let ok = !staff.csrf.is_empty()
        && sent.len() == staff.csrf.len()
        && sent
            .bytes()
            .zip(staff.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !ok {
        return Err(render::error_page(
            403,
            "This form has expired or did not come from this page. Go back, reload the page and try again.",
        ));
    }
    same_origin(req)
}

/// Refuses a post whose `Origin` (or, without one, `Referer`) names another site.
pub(crate) fn same_origin(req: &HttpRequest) -> Result<(), HttpResponse> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let claimed = req
        .headers()
        .get(header::ORIGIN)
        .or_else(|| req.headers().get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let authority = claimed
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .unwrap_or("");
    if claimed == "null" || authority != host {
        return Err(render::error_page(
            403,
            "This form was sent from another site.",
        ));
    }
    Ok(())
}

/// A GraphQL failure as the back office shows it.
pub(crate) enum GqlError {
    /// The role may not (FORBIDDEN).
    Forbidden,
    /// Anything else, with the message for the page.
    Other(String),
}

impl GqlError {
    pub(crate) fn into_page(self) -> HttpResponse {
        match self {
            GqlError::Forbidden => render::error_page(403, "Your role does not allow this."),
            GqlError::Other(m) => render::error_page(500, &m),
        }
    }
}

/// Runs `doc` with `vars` as the staff user; the `data` on success.
pub(crate) async fn gql(
    state: &ApiState,
    req: &HttpRequest,
    staff: &Staff,
    doc: &str,
    vars: Value,
) -> Result<Value, GqlError> {
    let request =
        async_graphql::Request::new(doc).variables(async_graphql::Variables::from_json(vars));
    let response = execute_on(
        &state.admin_schema,
        state,
        req,
        staff.viewer.clone(),
        request,
    )
    .await;
    if let Some(e) = response.errors.first() {
        let code = e
            .extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|c| c.to_string());
        return Err(match code.as_deref() {
            Some("\"FORBIDDEN\"") | Some("\"UNAUTHENTICATED\"") => GqlError::Forbidden,
            _ => GqlError::Other(e.message.clone()),
        });
    }
    serde_json::to_value(&response.data).map_err(|e| GqlError::Other(e.to_string()))
}

/// The first user error of a mutation payload at `payload`, as a sentence.
pub(crate) fn first_user_error(payload: &Value) -> Option<String> {
    let e = payload.get("userErrors")?.as_array()?.first()?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    let code = e.get("code").and_then(Value::as_str).unwrap_or("");
    Some(format!("{message} ({code})"))
}
