//! Webhook deliveries: signatures, retries, the attempt log, timeouts, rotation, replay.

use crate::support::{Harness, ev, t};
use chrono::Duration;
use partners::ShiftEventKind::*;
use partners::{DeliveryStatus, EventType, Viewer};
use shared::Clock as _;
use shared::jobs::JobError;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A harness whose partner has one endpoint at `url` for every event type, and one
/// `driver.unlinked` delivery waiting (returns the secret and the delivery).
async fn one_delivery(
    h: &Harness,
    url: &str,
    timeout_ms: Option<i32>,
) -> (partners::EndpointWithSecret, partners::WebhookDelivery) {
    let mut conn = h.conn().await;
    let endpoint = partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        h.partner,
        url,
        &EventType::ALL,
        timeout_ms,
    )
    .await
    .unwrap();
    drop(conn);
    let d = h.driver("07911 100201").await;
    h.link(h.partner, d, "w-1").await;
    let mut conn = h.conn().await;
    partners::unlink_by_partner(&mut conn, &h.clock, h.partner, "w-1")
        .await
        .unwrap();
    let deliveries = partners::list_deliveries(
        &mut conn,
        Viewer::Partner(h.partner),
        endpoint.endpoint.id,
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(deliveries.len(), 1);
    (endpoint, deliveries.into_iter().next().unwrap())
}

#[tokio::test]
async fn a_failed_delivery_is_retried_logged_and_can_be_replayed() {
    let h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("try later"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let (endpoint, delivery) = one_delivery(&h, &receiver.uri(), None).await;
    let job = h.job_of(delivery.id).await;

    let first = h.run_job(job).await;
    assert!(matches!(first, Err(JobError::Retry(_))), "{first:?}");
    let second = h.run_job(job).await;
    assert!(second.is_ok(), "{second:?}");

    let mut conn = h.conn().await;
    let viewer = Viewer::Partner(h.partner);
    let attempts = partners::list_attempts(&mut conn, viewer, delivery.id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[0].response_snippet.as_deref(), Some("try later"));
    assert!(!attempts[0].succeeded);
    assert_eq!(attempts[1].status_code, Some(200));
    assert!(attempts[1].succeeded);
    assert!(
        attempts
            .iter()
            .all(|a| a.latency_ms >= 0 && a.error.is_none())
    );
    let done = partners::get_delivery(&mut conn, viewer, delivery.id)
        .await
        .unwrap();
    assert_eq!(done.status, DeliveryStatus::Succeeded);
    assert_eq!(done.attempts, 2);

    // Another partner cannot see or replay it; ops can replay it.
    let other = h.other_partner().await;
    assert_eq!(
        partners::replay_delivery(
            &mut conn,
            &h.clock,
            Viewer::Partner(other),
            delivery.id,
            None
        )
        .await
        .unwrap_err()
        .code(),
        Some("DELIVERY_NOT_FOUND")
    );
    let replayed = partners::replay_delivery(
        &mut conn,
        &h.clock,
        Viewer::Staff(accounts::StaffId::new()),
        delivery.id,
        Some("Partner asked for it again"),
    )
    .await
    .unwrap();
    assert_eq!(replayed.status, DeliveryStatus::Pending);
    assert_eq!(replayed.replays, 1);
    drop(conn);
    assert_eq!(h.run_webhooks().await, 1);

    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 3);
    for req in &received {
        let header = req
            .headers
            .get(partners::SIGNATURE_HEADER)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(partners::verify_signature(
            &endpoint.secret,
            header,
            &req.body,
            h.clock.now(),
            Duration::minutes(5)
        ));
        assert_eq!(
            req.headers.get("ShiftCover-Event-Type").unwrap(),
            "driver.unlinked"
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["id"], delivery.event_id.as_str());
    }
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_is_retried_without_holding_anything_up() {
    let h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .mount(&receiver)
        .await;
    let (_, delivery) = one_delivery(&h, &receiver.uri(), Some(300)).await;
    let job = h.job_of(delivery.id).await;
    let started = std::time::Instant::now();
    let result = h.run_job(job).await;
    assert!(matches!(result, Err(JobError::Retry(_))), "{result:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let mut conn = h.conn().await;
    let attempts = partners::list_attempts(&mut conn, Viewer::Partner(h.partner), delivery.id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, None);
    assert!(
        attempts[0].error.as_deref().unwrap().contains("timed out"),
        "{attempts:?}"
    );
    assert!(attempts[0].latency_ms >= 300 && attempts[0].latency_ms < 2000);
    let d = partners::get_delivery(&mut conn, Viewer::Partner(h.partner), delivery.id)
        .await
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_for_three_days_then_failed() {
    let h = Harness::new().await;
    // Nothing listens on the discard port.
    let (_, delivery) = one_delivery(&h, "http://127.0.0.1:9/hooks", None).await;
    let job = h.job_of(delivery.id).await;
    assert!(matches!(h.run_job(job).await, Err(JobError::Retry(_))));
    h.clock.advance(Duration::hours(71));
    assert!(matches!(h.run_job(job).await, Err(JobError::Retry(_))));
    h.clock.advance(Duration::hours(2));
    assert!(matches!(h.run_job(job).await, Err(JobError::Permanent(_))));
    let mut conn = h.conn().await;
    let d = partners::get_delivery(&mut conn, Viewer::Partner(h.partner), delivery.id)
        .await
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 2);
    let attempts = partners::list_attempts(&mut conn, Viewer::Partner(h.partner), delivery.id)
        .await
        .unwrap();
    assert!(
        attempts
            .iter()
            .all(|a| a.error.is_some() && a.status_code.is_none())
    );
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_old_one_during_the_overlap() {
    let h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (old, delivery) = one_delivery(&h, &receiver.uri(), None).await;
    let mut conn = h.conn().await;
    let new = partners::rotate_secret(
        &mut conn,
        &h.clock,
        h.partner,
        old.endpoint.id,
        Duration::hours(24),
    )
    .await
    .unwrap();
    assert_ne!(new.secret, old.secret);
    assert_eq!(
        new.endpoint.previous_secret_expires_at,
        Some(h.clock.now() + Duration::hours(24))
    );
    assert_eq!(
        partners::rotate_secret(
            &mut conn,
            &h.clock,
            h.partner,
            old.endpoint.id,
            Duration::days(8)
        )
        .await
        .unwrap_err()
        .code(),
        Some("INVALID_OVERLAP")
    );
    drop(conn);
    h.run_job(h.job_of(delivery.id).await).await.unwrap();
    let req = receiver.received_requests().await.unwrap().remove(0);
    let header = req
        .headers
        .get(partners::SIGNATURE_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(header.matches("v1=").count(), 2);
    for secret in [&old.secret, &new.secret] {
        assert!(partners::verify_signature(
            secret,
            &header,
            &req.body,
            h.clock.now(),
            Duration::minutes(5)
        ));
    }

    // After the overlap only the new secret signs.
    h.clock.advance(Duration::hours(25));
    let mut conn = h.conn().await;
    partners::replay_delivery(
        &mut conn,
        &h.clock,
        Viewer::Partner(h.partner),
        delivery.id,
        None,
    )
    .await
    .unwrap();
    drop(conn);
    h.run_webhooks().await;
    let req = receiver.received_requests().await.unwrap().remove(1);
    let header = req
        .headers
        .get(partners::SIGNATURE_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(header.matches("v1=").count(), 1);
    assert!(partners::verify_signature(
        &new.secret,
        &header,
        &req.body,
        h.clock.now(),
        Duration::minutes(5)
    ));
    assert!(!partners::verify_signature(
        &old.secret,
        &header,
        &req.body,
        h.clock.now(),
        Duration::minutes(5)
    ));
}

#[tokio::test]
async fn endpoints_are_checked_scoped_and_can_be_disabled() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let bad = |e: partners::PartnersError| e.code().unwrap();
    assert_eq!(
        bad(partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            h.partner,
            "ftp://x",
            &[EventType::CoverStarted],
            None
        )
        .await
        .unwrap_err()),
        "INVALID_URL"
    );
    assert_eq!(
        bad(partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            h.partner,
            "https://hooks.example.com",
            &[],
            None
        )
        .await
        .unwrap_err()),
        "INVALID_EVENT_TYPES"
    );
    assert_eq!(
        bad(partners::register_webhook_endpoint(
            &mut conn,
            &h.clock,
            &h.settings.partner_webhooks,
            h.partner,
            "https://hooks.example.com",
            &[EventType::CoverStarted],
            Some(60_000)
        )
        .await
        .unwrap_err()),
        "INVALID_TIMEOUT"
    );
    let e = partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        h.partner,
        "https://hooks.example.com/sc",
        &[EventType::CoverEnded],
        None,
    )
    .await
    .unwrap();
    assert!(e.secret.starts_with("whsec_"));
    let other = h.other_partner().await;
    assert_eq!(
        bad(
            partners::disable_webhook_endpoint(&mut conn, &h.clock, other, e.endpoint.id)
                .await
                .unwrap_err()
        ),
        "ENDPOINT_NOT_FOUND"
    );
    let sandbox = partners::PartnerScope::test(h.partner.partner_id);
    assert!(
        partners::list_webhook_endpoints(&mut conn, sandbox)
            .await
            .unwrap()
            .is_empty()
    );
    let off = partners::disable_webhook_endpoint(&mut conn, &h.clock, h.partner, e.endpoint.id)
        .await
        .unwrap();
    assert!(!off.enabled);
    drop(conn);
    // A disabled endpoint gets nothing.
    let d = h.driver("07911 100251").await;
    h.link(h.partner, d, "dis").await;
    h.clock.set(t(10, 0));
    h.send(h.partner, &[ev("z1", "dis", JobAccepted, t(9, 0))])
        .await;
    h.send(h.partner, &[ev("z2", "dis", Offline, t(9, 10))])
        .await;
    assert_eq!(h.run_webhooks().await, 0);
}
