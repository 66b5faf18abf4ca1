//! Certificates, signed proof of cover, and live status events.

use crate::support::*;
use chrono::Duration;
use cover::{
    CoverEvent, CoverEventKind, CoverStatus, EndReason, ProofKey, SessionSource, StartCover,
    TokenError,
};
use futures::StreamExt;
use shared::Settings;
use testkit::TestDb;

fn settings() -> Settings {
    let mut s = Settings::default();
    s.http.public_url = "https://cover.example/".into();
    s
}

/// Checks a PDF's skeleton: header, objects where the cross-reference table says, the stream
/// lengths, one page, the trailer. Returns the document after its header as text, for content
/// checks (the header's second line is binary on purpose).
fn check_pdf_structure(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-1.4\n%"), "header");
    let header_end = pdf[9..].iter().position(|&b| b == b'\n').unwrap() + 10;
    assert!(
        pdf[10..header_end - 1].iter().all(|&b| b >= 0x80),
        "binary comment"
    );
    let body = std::str::from_utf8(&pdf[header_end..]).expect("ASCII after the header");
    let at = |offset: usize| std::str::from_utf8(&pdf[offset..]).unwrap();
    assert!(body.trim_end().ends_with("%%EOF"));
    let startxref: usize = body
        .rsplit("startxref")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        at(startxref).starts_with("xref\n"),
        "startxref points at the table"
    );
    let mut lines = at(startxref).lines().skip(1);
    let header: Vec<usize> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let (first, count) = (header[0], header[1]);
    assert_eq!(first, 0);
    assert_eq!(lines.next().unwrap(), "0000000000 65535 f ");
    for object in 1..count {
        let entry = lines.next().unwrap();
        assert_eq!(entry.len(), 19, "20-byte entries (with the newline)");
        assert!(entry.ends_with(" 00000 n "));
        let offset: usize = entry[..10].parse().unwrap();
        assert!(
            at(offset).starts_with(&format!("{object} 0 obj\n")),
            "object {object} at {offset}"
        );
    }
    assert_eq!(lines.next(), Some("trailer"));
    assert!(body.contains(&format!("trailer\n<< /Size {count} /Root 1 0 R")));
    assert_eq!(body.matches("/Type /Page ").count(), 1, "one page");
    assert!(body.contains("/Count 1"));
    // The content stream is as long as its dictionary says.
    let dict_at = body.find("<< /Length ").unwrap();
    let length: usize = body[dict_at + 11..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stream_at = body[dict_at..].find("stream\n").unwrap() + dict_at + 7;
    assert_eq!(
        &body[stream_at + length..stream_at + length + 10],
        "\nendstream"
    );
    body.to_owned()
}

#[tokio::test]
async fn certificate_html_and_pdf_carry_the_details_and_a_signed_verify_link() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let settings = settings();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let session = cover::start_session(
        &mut conn,
        &clock,
        &settings.cover,
        me,
        StartCover {
            vehicle_id: car.id,
            product_id: None,
            quote_id: None,
            idempotency_key: "cert".into(),
            source: SessionSource::Driver,
        },
        &TestFunds::ok(),
    )
    .await
    .unwrap()
    .session;

    let cert = cover::certificate(&mut conn, &clock, &settings, &session)
        .await
        .unwrap();
    assert_eq!(cert.certificate_number, session.certificate_number);
    assert_eq!(cert.insured_name, "Ada Lovelace");
    assert_eq!(cert.vehicle_registration.as_deref(), Some("AB12CDE"));
    assert_eq!(cert.vehicle_description, "Toyota Prius (car)");
    assert_eq!(cert.product_name, "Food delivery — hourly");
    assert_eq!(cert.wording_version, food.terms.wording_version);
    assert_eq!(cert.valid_until, session.max_end_at);
    assert_eq!(
        cert.verify_url,
        format!("https://cover.example/verify/{}", cert.token)
    );
    let key = ProofKey::from_settings(&settings.cover).unwrap();
    let claims = cover::verify_token(&key.public_key(), &cert.token).unwrap();
    assert_eq!(claims.certificate_number, session.certificate_number);
    assert_eq!(claims.registration.as_deref(), Some("AB12CDE"));

    let html = cover::render_certificate_html(&cert);
    assert!(html.contains(&session.certificate_number));
    assert!(html.contains("<svg"));
    assert!(html.contains(&cert.verify_url));

    let pdf = cover::render_certificate_pdf(&cert);
    let text = check_pdf_structure(&pdf);
    for needle in [
        format!("({}) Tj", session.certificate_number),
        "(Ada Lovelace) Tj".to_owned(),
        "(AB12CDE) Tj".to_owned(),
        "(Food delivery \\227 hourly) Tj".to_owned(),
        "(Certificate of motor insurance) Tj".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle}");
    }
    assert!(text.matches(" re f").count() > 50, "the QR code is drawn");
}

#[tokio::test]
async fn proof_of_cover_is_covered_then_expired_and_forgeries_prove_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let settings = settings();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let session = cover::start_session(
        &mut conn,
        &clock,
        &settings.cover,
        me,
        StartCover {
            vehicle_id: car.id,
            product_id: None,
            quote_id: None,
            idempotency_key: "proof".into(),
            source: SessionSource::Driver,
        },
        &TestFunds::ok(),
    )
    .await
    .unwrap()
    .session;
    let cert = cover::certificate(&mut conn, &clock, &settings, &session)
        .await
        .unwrap();
    let key = ProofKey::from_settings(&settings.cover).unwrap();
    let pk = key.public_key();

    clock.advance(Duration::minutes(30));
    let check = cover::cover_status(&mut conn, &clock, &pk, &cert.token)
        .await
        .unwrap();
    assert_eq!(check.status, CoverStatus::Covered);
    assert_eq!(check.reason, None);
    assert_eq!(check.registration.as_deref(), Some("AB12CDE"));
    assert_eq!(
        check.certificate_number.as_deref(),
        Some(&*session.certificate_number)
    );

    // Tampered: a later end in the payload, the old signature.
    let parts: Vec<&str> = cert.token.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);
    let mut claims = cover::verify_token(&pk, &cert.token).unwrap();
    claims.valid_until += Duration::days(365);
    let forged = key.sign_token(&claims).unwrap();
    let forged_payload = forged.split('.').nth(1).unwrap();
    assert_ne!(forged_payload, payload);
    let tampered = format!("{header}.{forged_payload}.{signature}");
    assert_eq!(
        cover::verify_token(&pk, &tampered),
        Err(TokenError::BadSignature)
    );
    let check = cover::cover_status(&mut conn, &clock, &pk, &tampered)
        .await
        .unwrap();
    assert_eq!(check.status, CoverStatus::NotCovered);
    assert_eq!(check.reason, Some("bad_signature"));
    assert_eq!(check.certificate_number, None);
    // Signed by someone else's key.
    let stranger = ProofKey::from_seed(&[42; 32]).sign_token(&claims).unwrap();
    let check = cover::cover_status(&mut conn, &clock, &pk, &stranger)
        .await
        .unwrap();
    assert_eq!(check.status, CoverStatus::NotCovered);
    let check = cover::cover_status(&mut conn, &clock, &pk, "not-a-token")
        .await
        .unwrap();
    assert_eq!(
        (check.status, check.reason),
        (CoverStatus::NotCovered, Some("malformed_token"))
    );
    // Genuine, but for a certificate we never issued.
    claims.certificate_number = "SC-0000-0000".into();
    let unknown = key.sign_token(&claims).unwrap();
    let check = cover::cover_status(&mut conn, &clock, &pk, &unknown)
        .await
        .unwrap();
    assert_eq!(check.reason, Some("unknown_certificate"));

    // Ended: the genuine token now says Expired, with the real end.
    clock.advance(Duration::minutes(30));
    let ended = cover::end_session(&mut conn, &clock, me, session.id, EndReason::Driver)
        .await
        .unwrap();
    assert_eq!(ended.events.len(), 1);
    let check = cover::cover_status(&mut conn, &clock, &pk, &cert.token)
        .await
        .unwrap();
    assert_eq!(check.status, CoverStatus::Expired);
    assert_eq!(check.reason, Some("session_ended"));
    assert_eq!(
        check.valid_until,
        Some(session.started_at + Duration::hours(1))
    );
}

#[tokio::test]
async fn cover_events_are_published_on_the_drivers_channel() {
    let prefix = testkit::unique_redis_prefix();
    let client = redis::Client::open(testkit::redis_url()).unwrap();
    let driver_id = accounts::DriverId::new();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(cover::cover_channel(&prefix, driver_id))
        .await
        .unwrap();
    let event = CoverEvent {
        driver_id,
        session_id: Some(cover::CoverSessionId::new()),
        kind: CoverEventKind::Started,
        at: chrono::Utc::now(),
    };
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let receivers = cover::publish_cover_event(&mut conn, &prefix, &event)
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let message = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        pubsub.on_message().next(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        message.get_channel_name(),
        format!("{prefix}:cover:driver:{driver_id}")
    );
    let payload: String = message.get_payload().unwrap();
    assert_eq!(serde_json::from_str::<CoverEvent>(&payload).unwrap(), event);
}
