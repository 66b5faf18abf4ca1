//! Templates of the back office: one [`minijinja::Environment`] with every template compiled in,
//! HTML auto-escaping on, and the filters the pages use.

use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use minijinja::{Environment, Value as JValue};
use serde_json::Value;
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("home.html", include_str!("templates/home.html")),
    ("search.html", include_str!("templates/search.html")),
    ("driver.html", include_str!("templates/driver.html")),
    ("jobs.html", include_str!("templates/jobs.html")),
    ("partners.html", include_str!("templates/partners.html")),
    ("partner.html", include_str!("templates/partner.html")),
    ("products.html", include_str!("templates/products.html")),
    ("version.html", include_str!("templates/version.html")),
    ("finance.html", include_str!("templates/finance.html")),
    ("claims.html", include_str!("templates/claims.html")),
    ("claim.html", include_str!("templates/claim.html")),
    ("disputes.html", include_str!("templates/disputes.html")),
    (
        "chargebacks.html",
        include_str!("templates/chargebacks.html"),
    ),
];

/// `2026-12-05T04:05:17.123Z` → `2026-12-05 04:05` (UTC); anything else unchanged.
fn when(v: JValue) -> String {
    let s = v.as_str().map(str::to_owned).unwrap_or_default();
    match chrono::DateTime::parse_from_rfc3339(&s) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => s,
    }
}

/// Percent-encodes a query-string value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "admin template does not compile");
            }
        }
        env.add_filter("when", when);
        env.add_filter("urlencode_value", |s: String| url_encode(&s));
        env
    })
}

/// Renders `template` with `context` as an HTML response with `status`.
pub(crate) fn page_with_status(status: u16, template: &str, context: &Value) -> HttpResponse {
    let env = environment();
    let html = env.get_template(template).and_then(|t| t.render(context));
    match html {
        Ok(html) => HttpResponse::build(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(html),
        Err(e) => {
            tracing::error!(template, error = %e, "admin page did not render");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be shown.")
        }
    }
}

/// Renders `template` with `context` (200).
pub(crate) fn page(template: &str, context: &Value) -> HttpResponse {
    page_with_status(200, template, context)
}

/// A page that says what went wrong, with `status`.
pub(crate) fn error_page(status: u16, message: &str) -> HttpResponse {
    let title = match status {
        400 => "That did not work",
        403 => "Not allowed",
        404 => "Not found",
        503 => "Unavailable",
        _ => "Something went wrong",
    };
    page_with_status(
        status,
        "error.html",
        &serde_json::json!({ "status": status, "title": title, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes() {
        let env = environment();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        let html = env
            .get_template("error.html")
            .unwrap()
            .render(
                serde_json::json!({ "status": 400, "title": "t", "message": "<script>x</script>" }),
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;x"), "{html}");
        assert!(!html.contains("<script>x"));
    }

    #[test]
    fn helpers() {
        assert_eq!(
            url_encode("/admin/drivers/a b?x=1"),
            "%2Fadmin%2Fdrivers%2Fa%20b%3Fx%3D1"
        );
        assert_eq!(
            when(JValue::from("2026-12-05T04:05:17.123Z")),
            "2026-12-05 04:05"
        );
        assert_eq!(when(JValue::from("soon")), "soon");
    }
}
