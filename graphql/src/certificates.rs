//! Certificate documents for the driver's app: `GET /certificates/{number}.html` and
//! `GET /certificates/{number}.pdf`.
//!
//! Authenticated like `/graphql` (a driver's `Authorization: Bearer` token; ops through their
//! session cookie). A certificate the caller may not see answers 404, exactly like one that does
//! not exist, so certificate numbers cannot be probed. The documents show personal data and are
//! never cached by shared caches. (The public roadside check is `/verify/{token}`.)

use crate::http::ApiState;
use crate::viewer;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// Registers the certificate routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/certificates/{file}", web::get().to(certificate_document));
}

/// The document format asked for by the file name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Pdf,
}

/// Splits `SC-7K4Q-9XM2.pdf` into the number and the format.
fn parse_file(file: &str) -> Option<(&str, Format)> {
    let (number, ext) = file.rsplit_once('.')?;
    let format = match ext {
        "html" => Format::Html,
        "pdf" => Format::Pdf,
        _ => return None,
    };
    let ok = number.len() <= 32
        && !number.is_empty()
        && number
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some((number, format))
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": "NOT_FOUND" }))
}

fn unauthenticated(reason: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({ "error": "UNAUTHENTICATED", "reason": reason }))
}

fn internal(what: &str, err: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %err, "{what}");
    HttpResponse::InternalServerError().finish()
}

async fn certificate_document(
    state: web::Data<ApiState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> HttpResponse {
    let core = &state.core;
    let viewer = match viewer::authenticate_document(core, &req, "certificate").await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    if viewer.is_anonymous() {
        return unauthenticated("UNAUTHENTICATED");
    }
    let Some((number, format)) = parse_file(&file) else {
        return not_found();
    };
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => return internal("database unavailable", e),
    };
    let session = match cover::find_by_certificate_number(&mut conn, number).await {
        Ok(Some(s)) if crate::guard::may_view_driver(viewer.principal(), s.driver_id) => s,
        Ok(_) => return not_found(),
        Err(e) => return internal("certificate lookup", e),
    };
    let certificate =
        match cover::certificate(&mut conn, core.clock.as_ref(), &core.settings, &session).await {
            Ok(c) => c,
            Err(e) if e.user_error().is_some() => return not_found(),
            Err(e) => return internal("certificate", e),
        };
    let (content_type, body) = match format {
        Format::Html => (
            "text/html; charset=utf-8",
            cover::render_certificate_html(&certificate).into_bytes(),
        ),
        Format::Pdf => (
            "application/pdf",
            cover::render_certificate_pdf(&certificate),
        ),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("x-robots-tag", "noindex"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "inline; filename=\"{number}.{}\"",
                if format == Format::Pdf { "pdf" } else { "html" }
            ),
        ))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_the_number_and_format() {
        assert_eq!(
            parse_file("SC-7K4Q-9XM2.pdf"),
            Some(("SC-7K4Q-9XM2", Format::Pdf))
        );
        assert_eq!(
            parse_file("SC-7K4Q-9XM2.html"),
            Some(("SC-7K4Q-9XM2", Format::Html))
        );
        assert_eq!(parse_file("SC-7K4Q-9XM2.exe"), None);
        assert_eq!(parse_file("SC-7K4Q-9XM2"), None);
        assert_eq!(parse_file("../etc.pdf"), None);
        assert_eq!(parse_file(".pdf"), None);
    }
}
