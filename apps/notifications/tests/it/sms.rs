//! SMS delivery through a fake Twilio that checks the request shapes.

use crate::support::*;
use notifications::{Status, jobs::stale_after};
use shared::jobs::JobError;
use std::time::Duration;
use wiremock::matchers::{basic_auth, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

const BODY: &str = "Your ShiftCover code is 123456. It expires in 5 minutes. Never share it.";

async fn twilio_answers(h: &Harness, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(twilio_messages_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(response)
        .expect(times)
        .mount(&h.twilio)
        .await;
}

#[tokio::test]
async fn an_sms_is_sent_with_twilios_exact_request_shape_and_recorded_sent() {
    let h = Harness::new().await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_body_json(twilio_created("SM0001", BODY)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_1", "123456").await;

    h.run(id).await.unwrap().unwrap();

    let requests = h.twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(
        r.url.path(),
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    assert_eq!(
        r.headers.get("authorization").unwrap().to_str().unwrap(),
        basic(ACCOUNT_SID, AUTH_TOKEN)
    );
    assert_eq!(
        form_pairs(std::str::from_utf8(&r.body).unwrap()),
        vec![
            ("To".to_owned(), PHONE.to_owned()),
            ("From".to_owned(), FROM.to_owned()),
            ("Body".to_owned(), BODY.to_owned()),
            (
                "StatusCallback".to_owned(),
                "https://api.shiftcover.test/webhooks/twilio".to_owned()
            ),
        ]
    );

    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    assert_eq!(n.provider_message_id.as_deref(), Some("SM0001"));
    assert_eq!(n.attempts, 1);
    assert!(n.sent_at.is_some() && n.sending_since.is_none());
    assert_eq!(h.job_state(id).await, ("done".into(), 1));
}

#[tokio::test]
async fn a_messaging_service_replaces_the_from_number() {
    let h = Harness::with(|s| {
        s.twilio.messaging_service_sid = "MG0123456789abcdef0123456789abcdef".into()
    })
    .await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_body_json(twilio_created("SM0002", BODY)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    h.run(id).await.unwrap().unwrap();
    let requests = h.twilio.received_requests().await.unwrap();
    let pairs = form_pairs(std::str::from_utf8(&requests[0].body).unwrap());
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["To", "MessagingServiceSid", "Body", "StatusCallback"]
    );
    assert_eq!(pairs[1].1, "MG0123456789abcdef0123456789abcdef");
}

#[tokio::test]
async fn running_the_job_twice_sends_once() {
    let h = Harness::new().await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_body_json(twilio_created("SM0003", BODY)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    h.run(id).await.unwrap().unwrap();
    // The relay hands the finished job out again (as after a lost acknowledgement): the handler
    // re-reads the notification, finds it sent, and completes without a second text.
    h.run(id).await.unwrap().unwrap();
    assert_eq!(h.twilio.received_requests().await.unwrap().len(), 1);
    let n = h.get(id).await;
    assert_eq!((n.status, n.attempts), (Status::Sent, 1));
    assert_eq!(h.job_state(id).await.0, "done");
}

#[tokio::test]
async fn an_invalid_or_unsubscribed_number_is_undeliverable_and_not_retried() {
    for code in [21211, 21614, 21610, 21408] {
        let h = Harness::new().await;
        twilio_answers(
            &h,
            ResponseTemplate::new(400).set_body_json(twilio_error(code, 400)),
            1,
        )
        .await;
        let id = h.sms("login_code:lgc_1", "123456").await;
        let result = h.run(id).await.unwrap();
        assert!(result.is_ok(), "{code}: {result:?}");
        let n = h.get(id).await;
        assert_eq!(n.status, Status::Undeliverable, "{code}");
        assert_eq!(n.failure_reason, Some(format!("undeliverable:{code}")));
        assert!(n.last_error.unwrap().contains(&format!("error {code}")));
        assert_eq!(h.job_state(id).await.0, "done");
        // Nothing is sent on a later delivery either.
        h.run(id).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried_and_the_next_attempt_sends() {
    for status in [429u16, 500, 503] {
        let h = Harness::new().await;
        Mock::given(method("POST"))
            .and(path(twilio_messages_path()))
            .respond_with(ResponseTemplate::new(status).set_body_json(twilio_error(20429, status)))
            .up_to_n_times(1)
            .expect(1)
            .mount(&h.twilio)
            .await;
        twilio_answers(
            &h,
            ResponseTemplate::new(201).set_body_json(twilio_created("SM0004", BODY)),
            1,
        )
        .await;
        let id = h.sms("login_code:lgc_1", "123456").await;

        let first = h.run(id).await.unwrap();
        assert!(
            matches!(first, Err(JobError::Retry(_))),
            "{status}: {first:?}"
        );
        let n = h.get(id).await;
        // Certainly not sent: back to pending, no doubt recorded.
        assert_eq!(n.status, Status::Pending, "{status}");
        assert!(n.ambiguous_at.is_none());
        assert!(n.last_error.unwrap().contains(&status.to_string()));
        assert_eq!(h.job_state(id).await.0, "pending");

        h.run(id).await.unwrap().unwrap();
        let n = h.get(id).await;
        assert_eq!((n.status, n.attempts), (Status::Sent, 2));
        assert_eq!(n.last_error, None);
    }
}

#[tokio::test]
async fn another_refusal_fails_the_notification_and_dead_letters_the_job() {
    let h = Harness::new().await;
    twilio_answers(
        &h,
        ResponseTemplate::new(400).set_body_json(twilio_error(21606, 400)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    let result = h.run(id).await.unwrap();
    assert!(matches!(result, Err(JobError::Permanent(_))), "{result:?}");
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Failed);
    assert_eq!(n.failure_reason.as_deref(), Some("rejected:21606"));
    assert_eq!(h.job_state(id).await.0, "dead");
}

#[tokio::test]
async fn the_last_attempt_failing_fails_the_notification() {
    let h = Harness::new().await;
    twilio_answers(&h, ResponseTemplate::new(503), 1).await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use shared::schema::outbox_jobs;
        let mut conn = h.conn().await;
        diesel::update(outbox_jobs::table)
            .set(outbox_jobs::attempts.eq(7))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let result = h.run(id).await.unwrap();
    assert!(matches!(result, Err(JobError::Retry(_))), "{result:?}");
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Failed);
    assert_eq!(n.failure_reason.as_deref(), Some("retries_exhausted"));
    assert_eq!(h.job_state(id).await, ("dead".into(), 8));
}

#[tokio::test]
async fn after_a_timeout_twilio_is_asked_before_sending_again_and_found() {
    let h = Harness::with(|s| s.twilio.timeout_ms = 300).await;
    // Twilio takes the message but answers too late.
    twilio_answers(
        &h,
        ResponseTemplate::new(201)
            .set_body_json(twilio_created("SM0005", BODY))
            .set_delay(Duration::from_millis(1_500)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_1", "123456").await;

    let first = h.run(id).await.unwrap();
    assert!(matches!(first, Err(JobError::Retry(_))), "{first:?}");
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sending);
    assert!(
        n.sending_since.is_none(),
        "no attempt is in flight any more"
    );
    assert!(n.ambiguous_at.is_some());
    assert!(n.last_error.unwrap().contains("timed out"));

    // The lookup lists the newest messages to the number: an older text with the same body,
    // a newer one with another body, and ours.
    let old = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc2822();
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(query_param("To", PHONE))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": [
                {"sid": "SM0099", "to": PHONE, "body": "Something else", "status": "delivered",
                 "date_created": chrono::Utc::now().to_rfc2822()},
                {"sid": "SM0005", "to": PHONE, "body": BODY, "status": "sent",
                 "date_created": chrono::Utc::now().to_rfc2822()},
                {"sid": "SM0001", "to": PHONE, "body": BODY, "status": "delivered",
                 "date_created": old},
            ],
            "page": 0, "page_size": 50,
        })))
        .expect(1)
        .mount(&h.twilio)
        .await;

    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    assert_eq!(n.provider_message_id.as_deref(), Some("SM0005"));
    assert_eq!(n.attempts, 2);
    assert_eq!(h.job_state(id).await.0, "done");
    // One POST only (the mock's `expect(1)` is checked when the server drops, too).
    let posts = h
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn the_lookup_reads_older_pages_of_a_busy_number_before_sending_again() {
    let h = Harness::with(|s| s.twilio.timeout_ms = 300).await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201)
            .set_body_json(twilio_created("SM0100", BODY))
            .set_delay(Duration::from_millis(1_500)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_2", "123456").await;
    let first = h.run(id).await.unwrap();
    assert!(matches!(first, Err(JobError::Retry(_))), "{first:?}");

    // The number has had a page of other texts since: ours is on the second page.
    let now = chrono::Utc::now().to_rfc2822();
    let others: Vec<serde_json::Value> = (0..50)
        .map(|i| {
            serde_json::json!({"sid": format!("SM1{i:03}"), "to": PHONE,
                                     "body": format!("Other text {i}"), "status": "delivered",
                                     "date_created": now})
        })
        .collect();
    let next = format!(
        "{}?To=%2B447911123456&PageSize=50&Page=1&PageToken=PAabc",
        twilio_messages_path()
    );
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .and(query_param("To", PHONE))
        .and(query_param_is_missing("Page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": others, "page": 0, "page_size": 50, "next_page_uri": next,
        })))
        .expect(1)
        .mount(&h.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(query_param("Page", "1"))
        .and(query_param("PageToken", "PAabc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": [{"sid": "SM0100", "to": PHONE, "body": BODY, "status": "sent",
                          "date_created": now}],
            "page": 1, "page_size": 50, "next_page_uri": null,
        })))
        .expect(1)
        .mount(&h.twilio)
        .await;

    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    assert_eq!(n.provider_message_id.as_deref(), Some("SM0100"));
    let posts = h
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "found on the second page: not sent again");
}

#[tokio::test]
async fn a_lookup_that_cannot_reach_back_far_enough_keeps_the_doubt_and_sends_nothing() {
    let h = Harness::with(|s| s.twilio.timeout_ms = 300).await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201)
            .set_body_json(twilio_created("SM0200", BODY))
            .set_delay(Duration::from_millis(1_500)),
        1,
    )
    .await;
    let id = h.sms("login_code:lgc_3", "123456").await;
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));

    // Every page is full of newer texts and points at another: the lookup gives up after its
    // pages rather than guess.
    let now = chrono::Utc::now().to_rfc2822();
    let others: Vec<serde_json::Value> = (0..50)
        .map(|i| {
            serde_json::json!({"sid": format!("SM3{i:03}"), "to": PHONE,
                                     "body": format!("Other text {i}"), "status": "delivered",
                                     "date_created": now})
        })
        .collect();
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": others, "page_size": 50,
            "next_page_uri": format!("{}?To=%2B447911123456&PageSize=50&Page=1&PageToken=PAnext", twilio_messages_path()),
        })))
        .expect(10)
        .mount(&h.twilio)
        .await;

    let second = h.run(id).await.unwrap();
    assert!(matches!(second, Err(JobError::Retry(_))), "{second:?}");
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sending, "still in doubt");
    assert!(n.ambiguous_at.is_some());
    let posts = h
        .twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "not sent a second time while in doubt");
}

#[tokio::test]
async fn after_a_timeout_a_message_twilio_does_not_have_is_sent_again() {
    let h = Harness::with(|s| s.twilio.timeout_ms = 300).await;
    Mock::given(method("POST"))
        .and(path(twilio_messages_path()))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(1_500)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&h.twilio)
        .await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_body_json(twilio_created("SM0006", BODY)),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .and(query_param("To", PHONE))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"messages": []})))
        .expect(1)
        .mount(&h.twilio)
        .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));
    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    assert_eq!(n.provider_message_id.as_deref(), Some("SM0006"));
}

#[tokio::test]
async fn a_failing_lookup_keeps_the_doubt_and_sends_nothing() {
    let h = Harness::with(|s| s.twilio.timeout_ms = 300).await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_delay(Duration::from_millis(1_500)),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&h.twilio)
        .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));
    let second = h.run(id).await.unwrap();
    assert!(matches!(second, Err(JobError::Retry(_))), "{second:?}");
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sending);
    assert!(n.sending_since.is_none());
    assert_eq!(n.attempts, 2);
}

#[tokio::test]
async fn an_attempt_in_flight_is_not_taken_over_until_it_is_stale() {
    let h = Harness::new().await;
    twilio_answers(
        &h,
        ResponseTemplate::new(201).set_body_json(twilio_created("SM0007", BODY)),
        0,
    )
    .await;
    Mock::given(method("GET"))
        .and(path(twilio_messages_path()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"messages": [
                {"sid": "SM0007", "to": PHONE, "body": BODY, "status": "delivered",
                 "date_created": chrono::Utc::now().to_rfc2822()}
            ]})),
        )
        .expect(1)
        .mount(&h.twilio)
        .await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    // Another worker claimed it a moment ago and is sending.
    let mut conn = h.conn().await;
    set_in_flight(&mut conn, id, chrono::Utc::now()).await;
    let result = h.run(id).await.unwrap();
    assert!(matches!(result, Err(JobError::Retry(_))), "{result:?}");
    assert_eq!(h.get(id).await.attempts, 1);

    // That worker died: once its claim is stale, the next attempt looks the message up.
    set_in_flight(
        &mut conn,
        id,
        chrono::Utc::now() - stale_after(&h.settings) - chrono::Duration::seconds(1),
    )
    .await;
    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    // Found, and Twilio already reports it delivered.
    assert_eq!(n.status, Status::Delivered);
    assert_eq!(n.provider_message_id.as_deref(), Some("SM0007"));
}

async fn set_in_flight(
    conn: &mut diesel_async::AsyncPgConnection,
    id: notifications::NotificationId,
    since: chrono::DateTime<chrono::Utc>,
) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use notifications::schema::notifications as n;
    diesel::update(n::table.find(id))
        .set((
            n::status.eq(Status::Sending),
            n::attempts.eq(1),
            n::sending_since.eq(since),
            n::first_attempt_at.eq(since),
        ))
        .execute(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_job_for_a_missing_notification_is_permanent() {
    let h = Harness::new().await;
    let id = h.sms("login_code:lgc_1", "123456").await;
    {
        use diesel_async::RunQueryDsl;
        let mut conn = h.conn().await;
        diesel::delete(notifications::schema::notifications::table)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let result = h.run(id).await.unwrap();
    match result {
        Err(JobError::Permanent(e)) => assert!(e.to_string().contains("does not exist"), "{e}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(h.job_state(id).await.0, "dead");
    // A payload that names something else no longer parses at all.
    let bad = serde_json::json!({"notification_id": "drv_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b"});
    assert!(serde_json::from_value::<notifications::DeliverNotification>(bad).is_err());
}
