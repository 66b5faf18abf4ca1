//! Claim photo uploads and downloads over plain HTTP, beside `/graphql`:
//!
//! - `POST /claims/photos`: a driver sends one image as the raw request body (any
//!   `Content-Type`; the type is read from the content). Answers `201` with
//!   `{"photo": {"id", "contentType", "sizeBytes"}}`; the `id` goes into `reportClaim`'s
//!   `photoIds`. Refusals carry a GraphQL-shaped error with a code: `413 PHOTO_TOO_LARGE`,
//!   `415 UNSUPPORTED_PHOTO_TYPE`, `401 UNAUTHENTICATED`, `403 FORBIDDEN` (not a driver).
//! - `GET /claims/photos/{id}`: the bytes, for the photo's driver and ops; `404` for anyone
//!   else, as for a photo that does not exist.

use crate::http::ApiState;
use crate::relay::{parse_global_id, to_global_id};
use crate::viewer::{self, Refusal};
use accounts::{Principal, Role};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use claims::{ClaimPhotoId, ClaimsError, FsPhotoStore};
use futures::StreamExt;
use serde_json::json;

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/claims/photos", web::post().to(upload))
        .route("/claims/photos/{id}", web::get().to(download));
}

/// Where a photo's bytes are served.
pub fn photo_url(public_url: &str, id: ClaimPhotoId) -> String {
    format!("{}/claims/photos/{id}", public_url.trim_end_matches('/'))
}

fn refusal(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    }))
}

fn auth_refusal(refused: Refusal) -> HttpResponse {
    match refused {
        Refusal::Unauthenticated { message, .. } => {
            refusal(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &message)
        }
        Refusal::RateLimited {
            retry_after_secs, ..
        } => HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
            .json(json!({ "errors": [{ "message": "Too many requests.", "extensions": { "code": "RATE_LIMITED" } }] })),
        Refusal::Unavailable(err) => {
            tracing::error!(error = %format!("{err:#}"), "credential check failed");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable; try again shortly.",
            )
        }
    }
}

fn internal(err: impl Into<anyhow::Error>) -> HttpResponse {
    let err: anyhow::Error = err.into();
    tracing::error!(error = %format!("{err:#}"), "claim photo request failed");
    sentry::integrations::anyhow::capture_anyhow(&err);
    refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "Internal server error",
    )
}

async fn upload(
    state: web::Data<ApiState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let core = &state.core;
    let viewer = match viewer::authenticate(core, &req).await {
        Ok(v) => v,
        Err(refused) => return auth_refusal(refused),
    };
    let driver = match viewer.principal() {
        Principal::Driver(d) => *d,
        Principal::Anonymous => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Sign in to continue.",
            );
        }
        _ => {
            return refusal(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "You are not allowed to do this.",
            );
        }
    };
    let max = core.settings.claims.max_photo_bytes;
    let too_large = || {
        let e = ClaimsError::PhotoTooLarge { max_bytes: max };
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PHOTO_TOO_LARGE",
            &e.to_string(),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return too_large();
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body could not be read",
            );
        };
        if body.len() + chunk.len() > max {
            return too_large();
        }
        body.extend_from_slice(&chunk);
    }
    let store = FsPhotoStore::from_settings(&core.settings.claims);
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal(anyhow::anyhow!("database pool: {e}")),
    };
    match claims::upload_photo(
        &mut conn,
        core.clock.as_ref(),
        &store,
        driver.driver_id,
        &body,
        max,
    )
    .await
    {
        Ok(photo) => HttpResponse::Created().json(json!({
            "photo": {
                "id": to_global_id("ClaimPhoto", &photo.id).0,
                "contentType": photo.photo_type.content_type(),
                "sizeBytes": photo.size_bytes,
                "url": photo_url(&core.settings.http.public_url, photo.id),
            }
        })),
        Err(e) => match e.user_error() {
            Some(user) => {
                let status = match e {
                    ClaimsError::PhotoTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    ClaimsError::UnsupportedPhotoType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => StatusCode::BAD_REQUEST,
                };
                refusal(status, user.code, &user.message)
            }
            None => internal(e),
        },
    }
}

async fn download(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let core = &state.core;
    let viewer = match viewer::authenticate(core, &req).await {
        Ok(v) => v,
        Err(refused) => return auth_refusal(refused),
    };
    let not_found = || refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "No such photo.");
    let raw = path.into_inner();
    let id = match raw.parse::<ClaimPhotoId>() {
        Ok(id) => id,
        Err(_) => match parse_global_id::<ClaimPhotoId>(&raw, "ClaimPhoto") {
            Some(id) => id,
            None => return not_found(),
        },
    };
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal(anyhow::anyhow!("database pool: {e}")),
    };
    let photo = match claims::get_photo(&mut conn, id).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(),
        Err(e) => return internal(e),
    };
    let allowed = match viewer.principal() {
        Principal::Driver(d) => d.driver_id == photo.driver_id,
        Principal::Staff(s) => s.has(Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    };
    if !allowed {
        return not_found();
    }
    let store = FsPhotoStore::from_settings(&core.settings.claims);
    match claims::PhotoStore::get(&store, &photo.storage_key).await {
        Ok(Some(bytes)) => HttpResponse::Ok()
            .content_type(photo.photo_type.content_type())
            .insert_header((header::CACHE_CONTROL, "private, max-age=300"))
            .insert_header(("x-content-type-options", "nosniff"))
            .body(bytes),
        Ok(None) => internal(anyhow::anyhow!(
            "photo {} has no bytes in the store",
            photo.id
        )),
        Err(e) => internal(e),
    }
}
