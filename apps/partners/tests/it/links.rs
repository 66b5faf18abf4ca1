//! Linking: codes, the rules of who may link to whom, unlinking by either side, stale links.

use crate::support::{Harness, ev, t};
use chrono::Duration;
use partners::ShiftEventKind::*;
use partners::{EventType, UnlinkedBy, codes};
use shared::Clock as _;

#[tokio::test]
async fn codes_link_once_and_the_linking_rules_hold() {
    let h = Harness::new().await;
    let other = h.other_partner().await;
    let ada = h.driver("07911 100101").await;
    let bob = h.driver("07911 100102").await;
    let mut conn = h.conn().await;

    let code = partners::create_link_code(&mut conn, &h.clock, ada)
        .await
        .unwrap();
    assert_eq!(code.code.len(), 9);
    assert_eq!(code.expires_at, h.clock.now() + Duration::minutes(30));
    let link = partners::link_driver(&mut conn, &h.clock, h.partner, &code.code, "ext-ada")
        .await
        .unwrap();
    assert_eq!(link.driver_id, ada);
    assert_eq!(link.external_driver_id, "ext-ada");
    assert!(link.is_linked() && !link.test_mode);

    // The partner's retry answers the same link; the code is spent for anything else.
    let typed = code.code.to_lowercase().replace('-', " ");
    let again = partners::link_driver(&mut conn, &h.clock, h.partner, &typed, "ext-ada")
        .await
        .unwrap();
    assert_eq!(again.id, link.id);
    let code_err = |e: partners::PartnersError| e.code().unwrap();
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, &code.code, "ext-other")
                .await
                .unwrap_err()
        ),
        "INVALID_LINK_CODE"
    );
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, other, &code.code, "ext-ada")
                .await
                .unwrap_err()
        ),
        "INVALID_LINK_CODE"
    );
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, "ZZZZ-ZZZZ", "x")
                .await
                .unwrap_err()
        ),
        "INVALID_LINK_CODE"
    );
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, "nonsense", "x")
                .await
                .unwrap_err()
        ),
        "INVALID_LINK_CODE"
    );

    // An external id names one driver per partner; a driver links to a partner once.
    let bob_code = partners::create_link_code(&mut conn, &h.clock, bob)
        .await
        .unwrap();
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, &bob_code.code, "ext-ada")
                .await
                .unwrap_err()
        ),
        "EXTERNAL_ID_TAKEN"
    );
    let ada_again = partners::create_link_code(&mut conn, &h.clock, ada)
        .await
        .unwrap();
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, &ada_again.code, "ext-ada-2")
                .await
                .unwrap_err()
        ),
        "ALREADY_LINKED"
    );
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, &bob_code.code, " ")
                .await
                .unwrap_err()
        ),
        "INVALID_EXTERNAL_DRIVER_ID"
    );

    // A driver may work for several partners.
    let with_other = partners::link_driver(&mut conn, &h.clock, other, &ada_again.code, "A-1")
        .await
        .unwrap();
    assert_eq!(with_other.driver_id, ada);
    let links = partners::list_links_for_driver(&mut conn, ada)
        .await
        .unwrap();
    assert_eq!(links.len(), 2);
    let mine = partners::list_links_for_partner(&mut conn, h.partner, None, 10)
        .await
        .unwrap();
    assert_eq!(mine.iter().map(|l| l.id).collect::<Vec<_>>(), vec![link.id]);

    // Codes expire.
    h.clock.advance(Duration::minutes(31));
    assert_eq!(
        code_err(
            partners::link_driver(&mut conn, &h.clock, h.partner, &bob_code.code, "ext-bob")
                .await
                .unwrap_err()
        ),
        "LINK_CODE_EXPIRED"
    );
}

#[tokio::test]
async fn either_side_unlinks_and_the_partner_is_told() {
    let h = Harness::new().await;
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let mut conn = h.conn().await;
    partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        h.partner,
        &receiver.uri(),
        &[EventType::DriverUnlinked],
        None,
    )
    .await
    .unwrap();
    drop(conn);
    let ada = h.driver("07911 100111").await;
    let bob = h.driver("07911 100112").await;
    let ada_link = h.link(h.partner, ada, "ada").await;
    h.link(h.partner, bob, "bob").await;
    let mut conn = h.conn().await;

    let by_partner = partners::unlink_by_partner(&mut conn, &h.clock, h.partner, "bob")
        .await
        .unwrap();
    assert_eq!(by_partner.unlinked_by, Some(UnlinkedBy::Partner));
    assert_eq!(
        partners::unlink_by_partner(&mut conn, &h.clock, h.partner, "bob")
            .await
            .unwrap_err()
            .code(),
        Some("NOT_LINKED")
    );
    // A driver unlinks only their own links.
    assert_eq!(
        partners::unlink_by_driver(&mut conn, &h.clock, bob, ada_link.id)
            .await
            .unwrap_err()
            .code(),
        Some("LINK_NOT_FOUND")
    );
    let by_driver = partners::unlink_by_driver(&mut conn, &h.clock, ada, ada_link.id)
        .await
        .unwrap();
    assert_eq!(by_driver.unlinked_by, Some(UnlinkedBy::Driver));
    drop(conn);

    let r = h
        .send(h.partner, &[ev("x1", "ada", JobAccepted, t(7, 0))])
        .await;
    assert_eq!(r[0].code, Some(codes::NOT_LINKED));

    // The partner heard of both, once each.
    h.run_webhooks().await;
    let received = receiver.received_requests().await.unwrap();
    let unlinked: Vec<String> = received
        .iter()
        .map(|req| serde_json::from_slice::<serde_json::Value>(&req.body).unwrap())
        .filter(|b| b["type"] == "driver.unlinked")
        .map(|b| b["data"]["external_driver_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unlinked.len(), 2);
    assert!(unlinked.contains(&"ada".to_owned()) && unlinked.contains(&"bob".to_owned()));

    // An unlinked id can be linked again, to a new link.
    let again = h.link(h.partner, bob, "bob").await;
    assert_ne!(again.id, by_partner.id);
}

#[tokio::test]
async fn links_without_events_for_long_are_flagged_not_dropped() {
    let h = Harness::new().await;
    let ada = h.driver("07911 100121").await;
    let bob = h.driver("07911 100122").await;
    h.link(h.partner, ada, "ada").await;
    h.link(h.partner, bob, "bob").await;
    h.clock.advance(Duration::days(31));
    // Bob works; Ada has not for a month.
    h.send(h.partner, &[ev("b1", "bob", Online, h.clock.now())])
        .await;
    let mut conn = h.conn().await;
    let flagged = partners::flag_stale_links(&mut conn, &h.clock, Duration::days(30))
        .await
        .unwrap();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].external_driver_id, "ada");
    // Flagging again changes nothing; the link still works.
    assert!(
        partners::flag_stale_links(&mut conn, &h.clock, Duration::days(30))
            .await
            .unwrap()
            .is_empty()
    );
    let links = partners::list_links_for_partner(&mut conn, h.partner, None, 10)
        .await
        .unwrap();
    assert_eq!(links.len(), 2);
    drop(conn);
    // Her next event clears the flag.
    h.send(h.partner, &[ev("a1", "ada", Online, h.clock.now())])
        .await;
    let mut conn = h.conn().await;
    let ada_link = partners::get_link_for_partner(&mut conn, h.partner, "ada")
        .await
        .unwrap();
    assert!(ada_link.flagged_stale_at.is_none());
    assert_eq!(ada_link.last_event_at, Some(h.clock.now()));
}
