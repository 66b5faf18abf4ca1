//! Certificates of motor insurance: the data of one session's certificate, and its HTML and PDF
//! renderings, both with a QR code of the signed verify link.
//!
//! The verify link is `<http.public_url>/verify/<token>`, the token being the session's signed
//! proof of cover ([`crate::proof`]): whoever scans it sees the live status of the cover.

use crate::error::CoverError;
use crate::pdf::{Font, PAGE_HEIGHT, PAGE_WIDTH, Page, wrap};
use crate::proof::{ProofClaims, ProofKey};
use crate::qr::{QUIET_ZONE, QrMatrix};
use crate::sessions::{CoverSession, SessionStatus};
use crate::support::uk_time;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use shared::{Clock, Settings};

/// Shown when a driver has not given their name yet.
const NAME_NOT_GIVEN: &str = "Name not given";

/// Everything a certificate shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// The certificate number, e.g. `SC-7K4Q-9XM2`.
    pub certificate_number: String,
    /// The session it certifies.
    pub session_id: crate::ids::CoverSessionId,
    /// The session's status when the certificate was made.
    pub session_status: SessionStatus,
    /// The insured driver's name.
    pub insured_name: String,
    /// The vehicle's registration; `None` for pedal cycles.
    pub vehicle_registration: Option<String>,
    /// Make and model (when given) and type, e.g. `Toyota Prius (car)`.
    pub vehicle_description: String,
    /// The product's name.
    pub product_name: String,
    /// The product version the session is priced on.
    pub product_version_number: i32,
    /// The policy wording version that applies.
    pub wording_version: String,
    /// Cover starts.
    pub valid_from: DateTime<Utc>,
    /// Cover ends (ended), or ends at the latest (active).
    pub valid_until: DateTime<Utc>,
    /// When this certificate was made.
    pub issued_at: DateTime<Utc>,
    /// The signed proof-of-cover token.
    pub token: String,
    /// Where anyone can check the cover: `<public url>/verify/<token>`.
    pub verify_url: String,
}

/// Builds the certificate of a session: reads the driver, vehicle and product, and signs its
/// proof-of-cover token with `settings.cover.signing_key`.
///
/// Errors: `DRIVER_NOT_FOUND` (a deleted account), `VEHICLE_NOT_FOUND`; internal ones.
pub async fn certificate(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &Settings,
    session: &CoverSession,
) -> Result<Certificate, CoverError> {
    let driver = accounts::get_driver(conn, session.driver_id)
        .await
        .map_err(|e| crate::enrolments::accounts_error(e, CoverError::DriverNotFound))?;
    let vehicle = accounts::get_vehicles(conn, &[session.vehicle_id])
        .await
        .map_err(|e| CoverError::Internal(anyhow::Error::new(e)))?
        .into_iter()
        .next()
        .ok_or(CoverError::VehicleNotFound)?;
    let version = pricing::get_version(conn, session.product_version_id).await?;
    let product = pricing::get_product(conn, version.product_id).await?;
    let registration = vehicle.registration.as_ref().map(|r| r.as_str().to_owned());
    let claims = ProofClaims::for_session(session, registration.clone(), clock.now());
    let key = ProofKey::from_settings(&settings.cover)?;
    let token = key.sign_token(&claims)?;
    let verify_url = format!(
        "{}/verify/{token}",
        settings.http.public_url.trim_end_matches('/')
    );
    let make_model: Vec<&str> = [vehicle.make.as_deref(), vehicle.model.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let kind = vehicle.vehicle_type.as_str().replace('_', "-");
    let vehicle_description = if make_model.is_empty() {
        kind
    } else {
        format!("{} ({kind})", make_model.join(" "))
    };
    Ok(Certificate {
        certificate_number: session.certificate_number.clone(),
        session_id: session.id,
        session_status: session.status,
        insured_name: driver.name.unwrap_or_else(|| NAME_NOT_GIVEN.to_owned()),
        vehicle_registration: registration,
        vehicle_description,
        product_name: product.name,
        product_version_number: version.version_number,
        wording_version: version.terms.wording_version,
        valid_from: claims.valid_from,
        valid_until: session.covered_until(),
        issued_at: clock.now(),
        token,
        verify_url,
    })
}

pub use shared::html::escape as escape_html;

impl Certificate {
    /// The lines of the certificate, as (label, value), in reading order.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let period_end = match self.session_status {
            SessionStatus::Active => format!("{} at the latest", uk_time(self.valid_until)),
            _ => uk_time(self.valid_until),
        };
        vec![
            ("Certificate number", self.certificate_number.clone()),
            ("Policyholder", self.insured_name.clone()),
            (
                "Vehicle registration",
                self.vehicle_registration
                    .clone()
                    .unwrap_or_else(|| "None (pedal cycle)".to_owned()),
            ),
            ("Vehicle", self.vehicle_description.clone()),
            ("Product", self.product_name.clone()),
            (
                "Policy wording",
                format!(
                    "{} (product version {})",
                    self.wording_version, self.product_version_number
                ),
            ),
            ("Cover from", uk_time(self.valid_from)),
            ("Cover until", period_end),
            ("Issued", uk_time(self.issued_at)),
        ]
    }

    fn statement(&self) -> String {
        format!(
            "This certificate is evidence that a policy of insurance under the wording {} \
             covers the person and vehicle named above, for the period shown only, as required \
             by the Road Traffic Act 1988. Cover applies only while the cover session is active; \
             check it now at the link or QR code on this certificate.",
            self.wording_version
        )
    }
}

/// The certificate as a standalone HTML page (every value escaped), with the QR code of the
/// verify link inline as SVG.
pub fn render_certificate_html(certificate: &Certificate) -> String {
    let e = escape_html;
    let mut rows = String::new();
    for (label, value) in certificate.lines() {
        rows.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", e(label), e(&value)));
    }
    let qr = QrMatrix::encode(&certificate.verify_url)
        .map(|q| q.to_svg(200, "QR code of the link that verifies this cover"))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Certificate {number} — ShiftCover</title>\n<style>\n\
         body{{font-family:Helvetica,Arial,sans-serif;color:#111;margin:2rem;max-width:48rem}}\n\
         h1{{font-size:1.6rem;margin-bottom:.2rem}}\n\
         dl{{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1.2rem}}\n\
         dt{{font-weight:bold}}dd{{margin:0}}\n\
         figure{{margin:1.5rem 0}}figcaption{{font-size:.85rem;word-break:break-all}}\n\
         .legal{{font-size:.8rem;color:#444}}\n</style>\n</head>\n<body>\n<main>\n\
         <p>ShiftCover</p>\n<h1>Certificate of motor insurance</h1>\n<dl>\n{rows}</dl>\n\
         <figure>{qr}<figcaption>Scan to check this cover now: \
         <a href=\"{url}\">{url}</a></figcaption></figure>\n\
         <p class=\"legal\">{statement}</p>\n</main>\n</body>\n</html>\n",
        number = e(&certificate.certificate_number),
        url = e(&certificate.verify_url),
        statement = e(&certificate.statement()),
    )
}

/// The certificate as a one-page A4 PDF: the same lines in Helvetica, and the QR code of the
/// verify link drawn as filled squares.
pub fn render_certificate_pdf(certificate: &Certificate) -> Vec<u8> {
    const MARGIN: f32 = 56.0;
    let mut page = Page::new();
    let mut y = PAGE_HEIGHT - MARGIN;
    page.gray(0.35);
    page.text(MARGIN, y, 12.0, Font::Bold, "ShiftCover");
    page.gray(0.0);
    y -= 30.0;
    page.text(
        MARGIN,
        y,
        20.0,
        Font::Bold,
        "Certificate of motor insurance",
    );
    y -= 34.0;
    for (label, value) in certificate.lines() {
        page.text(MARGIN, y, 11.0, Font::Bold, label);
        let mut first = true;
        for line in wrap(&value, 52) {
            if !first {
                y -= 14.0;
            }
            page.text(MARGIN + 150.0, y, 11.0, Font::Regular, &line);
            first = false;
        }
        y -= 20.0;
    }

    y -= 10.0;
    if let Ok(qr) = QrMatrix::encode(&certificate.verify_url) {
        let side_modules = qr.width() + 2 * QUIET_ZONE;
        let size = 160.0_f32;
        let module = size / side_modules as f32;
        let top = y;
        let left = MARGIN;
        page.gray(0.0);
        for (row, col, len) in qr.dark_runs() {
            let x = left + (col + QUIET_ZONE) as f32 * module;
            let row_top = top - (row + QUIET_ZONE) as f32 * module;
            page.fill_rect(x, row_top - module, len as f32 * module, module);
        }
        let text_x = left + size + 16.0;
        let mut ty = top - 24.0;
        page.text(text_x, ty, 11.0, Font::Bold, "Check this cover now");
        ty -= 16.0;
        for line in wrap("Scan the code, or open this link:", 60) {
            page.text(text_x, ty, 9.0, Font::Regular, &line);
            ty -= 12.0;
        }
        for line in wrap(&certificate.verify_url, 58) {
            page.text(text_x, ty, 8.0, Font::Regular, &line);
            ty -= 11.0;
        }
        y = (top - size).min(ty) - 20.0;
    }

    page.gray(0.25);
    let usable = PAGE_WIDTH - 2.0 * MARGIN;
    // Helvetica averages about half an em per character.
    let per_line = (usable / (8.0 * 0.5)) as usize;
    for line in wrap(&certificate.statement(), per_line) {
        page.text(MARGIN, y, 8.0, Font::Regular, &line);
        y -= 11.0;
    }
    page.into_document(&format!(
        "ShiftCover certificate {}",
        certificate.certificate_number
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sample() -> Certificate {
        let at = DateTime::from_timestamp(1_795_424_400, 0).unwrap();
        Certificate {
            certificate_number: "SC-7K4Q-9XM2".into(),
            session_id: crate::ids::CoverSessionId::new(),
            session_status: SessionStatus::Active,
            insured_name: "Ada <script>alert(1)</script> O'Neil".into(),
            vehicle_registration: Some("AB12CDE".into()),
            vehicle_description: "Honda PCX (scooter)".into(),
            product_name: "Food delivery — hourly".into(),
            product_version_number: 1,
            wording_version: "FD-2026.1".into(),
            valid_from: at,
            valid_until: at + chrono::Duration::hours(16),
            issued_at: at,
            token: "abc.def".into(),
            verify_url: "https://shiftcover.example/verify/abc.def".into(),
        }
    }

    #[test]
    fn html_escapes_values_and_embeds_the_qr_code() {
        let html = render_certificate_html(&sample());
        assert!(html.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Neil"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(html.contains("href=\"https://shiftcover.example/verify/abc.def\""));
        assert!(html.contains("SC-7K4Q-9XM2"));
    }

    #[test]
    fn pdf_has_the_lines_and_the_qr_code() {
        let pdf = render_certificate_pdf(&sample());
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("(SC-7K4Q-9XM2) Tj"));
        assert!(text.contains("(Food delivery \\227 hourly) Tj"));
        assert!(text.matches(" re f").count() > 50, "QR modules drawn");
        assert!(text.trim_end().ends_with("%%EOF"));
    }
}
