//! Non-GraphQL routes: provider webhooks (Stripe, Twilio, Mailgun), the public proof-of-cover
//! page `GET /verify/{token}` and the published key `GET /.well-known/shiftcover-cover-key.json`.
//!
//! Webhooks answer with bare status codes: 400 for a body or signature Stripe should not retry,
//! 403/406 for a refused Twilio/Mailgun signature, 500 only when our storage failed (so the
//! provider retries). Internals are logged, never returned.

use crate::http::ApiState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// Registers the webhook and proof-of-cover routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/stripe", web::post().to(stripe))
        .route("/webhooks/twilio", web::post().to(twilio))
        .route("/webhooks/mailgun", web::post().to(mailgun))
        .route("/verify/{token}", web::get().to(verify_page))
        .route(
            "/.well-known/shiftcover-cover-key.json",
            web::get().to(cover_key),
        );
}

fn internal(what: &str, err: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %err, "{what}");
    HttpResponse::InternalServerError().finish()
}

async fn stripe(state: web::Data<ApiState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let core = &state.core;
    let stripe = &core.settings.stripe;
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = payments::verify_stripe_signature(
        stripe.webhook_secret.expose(),
        signature,
        &body,
        core.clock.now(),
        stripe.webhook_tolerance_secs,
    ) {
        tracing::warn!(error = %e, "stripe webhook refused");
        return HttpResponse::BadRequest().finish();
    }
    let Ok(raw) = std::str::from_utf8(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let env = match payments::PaymentsEnv::from_settings(&core.settings, core.clock.clone()) {
        Ok(env) => env,
        Err(e) => return internal("payments environment", e),
    };
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal("database unavailable", e),
    };
    match payments::record_event(&mut conn, &env, raw).await {
        Ok(_) => HttpResponse::Ok().json(json!({ "received": true })),
        Err(payments::PaymentsError::InvalidEvent(why)) => {
            tracing::warn!(why, "stripe webhook: invalid event");
            HttpResponse::BadRequest().finish()
        }
        Err(e) => internal("stripe webhook not stored", e),
    }
}

async fn twilio(
    state: web::Data<ApiState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let core = &state.core;
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let url = format!(
        "{}{path}",
        core.settings.http.public_url.trim_end_matches('/')
    );
    let signature = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let params = form.into_inner();
    if !notifications::verify_twilio_signature(
        core.settings.twilio.auth_token.expose(),
        &url,
        &params,
        signature,
    ) {
        tracing::warn!(%url, "twilio webhook: bad signature");
        return HttpResponse::Forbidden().finish();
    }
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal("database unavailable", e),
    };
    match notifications::apply_twilio_status(&mut conn, &params).await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(e) => internal("twilio status not applied", e),
    }
}

async fn mailgun(state: web::Data<ApiState>, body: web::Json<serde_json::Value>) -> HttpResponse {
    let core = &state.core;
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal("database unavailable", e),
    };
    let body = body.into_inner();
    match notifications::verify_mailgun_webhook(
        &mut conn,
        core.settings.mailgun.webhook_signing_key.expose(),
        &body,
        core.clock.now(),
    )
    .await
    {
        Ok(()) => {}
        Err(notifications::MailgunWebhookError::Rejected(e)) => {
            tracing::warn!(error = %e, "mailgun webhook refused");
            return HttpResponse::NotAcceptable().finish();
        }
        Err(e) => return internal("mailgun token not recorded", e),
    }
    match notifications::apply_mailgun_event(&mut conn, &body).await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(e) => internal("mailgun event not applied", e),
    }
}

use shared::html::escape;

async fn verify_page(state: web::Data<ApiState>, token: web::Path<String>) -> HttpResponse {
    let core = &state.core;
    let key = match cover::ProofKey::from_settings(&core.settings.cover) {
        Ok(k) => k.public_key(),
        Err(e) => return internal("cover signing key", e),
    };
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal("database unavailable", e),
    };
    let check = match cover::cover_status(&mut conn, core.clock.as_ref(), &key, &token).await {
        Ok(c) => c,
        Err(e) => return internal("cover status", e),
    };
    let (class, headline) = match check.status {
        cover::CoverStatus::Covered => ("covered", "Covered"),
        cover::CoverStatus::NotCovered => ("not-covered", "Not covered"),
        cover::CoverStatus::Expired => ("expired", "Expired"),
    };
    let fmt_time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let mut details = String::new();
    let rows = [
        ("Certificate", check.certificate_number.clone()),
        ("Registration", check.registration.clone()),
        ("Valid from", fmt_time(check.valid_from)),
        ("Valid until", fmt_time(check.valid_until)),
    ];
    for (label, value) in rows {
        if let Some(value) = value {
            details.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>",
                escape(label),
                escape(&value)
            ));
        }
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ShiftCover proof of cover: {headline}</title></head>\
         <body><main class=\"{class}\"><h1>{headline}</h1><dl>{details}</dl>\
         <p>Checked at {}.</p></main></body></html>\n",
        escape(&core.clock.now().format("%Y-%m-%d %H:%M:%S UTC").to_string()),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-robots-tag", "noindex"))
        .body(html)
}

async fn cover_key(state: web::Data<ApiState>) -> HttpResponse {
    match cover::ProofKey::from_settings(&state.core.settings.cover) {
        Ok(key) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .json(json!({ "keys": [key.public_jwk()] })),
        Err(e) => internal("cover signing key", e),
    }
}
