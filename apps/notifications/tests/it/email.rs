//! Email delivery through a fake Mailgun that checks the request shapes.

use crate::support::*;
use notifications::{CallbackOutcome, Status};
use shared::jobs::JobError;
use std::time::Duration;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};

fn accepted(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"id": format!("<{id}>"), "message": "Queued. Thank you."}),
    )
}

async fn mailgun_answers(h: &Harness, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(mailgun_messages_path()))
        .and(basic_auth("api", MG_KEY))
        .respond_with(response)
        .expect(times)
        .mount(&h.mailgun)
        .await;
}

fn posts(requests: &[wiremock::Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

#[tokio::test]
async fn an_email_is_sent_as_mailguns_exact_multipart_request_and_recorded_sent() {
    let h = Harness::new().await;
    mailgun_answers(&h, accepted("20261123090000.1.ABC@mg.shiftcover.test"), 1).await;
    let id = h.email("top_up_action_needed:tu_1").await;
    let n = h.get(id).await;

    h.run(id).await.unwrap().unwrap();

    let requests = h.mailgun.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.url.path(), "/v3/mg.shiftcover.test/messages");
    assert_eq!(
        r.headers.get("authorization").unwrap().to_str().unwrap(),
        basic("api", MG_KEY)
    );
    let content_type = r.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    assert_eq!(
        multipart_pairs(content_type, &r.body),
        vec![
            ("from".to_owned(), MG_FROM.to_owned()),
            ("to".to_owned(), EMAIL.to_owned()),
            (
                "subject".to_owned(),
                "Action needed: confirm your £10.00 top-up".to_owned()
            ),
            ("text".to_owned(), n.body_text.clone()),
            ("html".to_owned(), n.body_html.clone().unwrap()),
            ("v:notification_id".to_owned(), id.to_string()),
        ]
    );

    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    // Stored as webhooks name it: without the angle brackets.
    assert_eq!(
        n.provider_message_id.as_deref(),
        Some("20261123090000.1.ABC@mg.shiftcover.test")
    );
    assert_eq!(h.job_state(id).await, ("done".into(), 1));
    // A duplicate delivery of the job sends nothing more.
    h.run(id).await.unwrap().unwrap();
    assert_eq!(h.mailgun.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_email_fails_and_is_not_retried() {
    for status in [400u16, 401, 404] {
        let h = Harness::new().await;
        mailgun_answers(
            &h,
            ResponseTemplate::new(status).set_body_json(
                serde_json::json!({"message": "'to' parameter is not a valid address"}),
            ),
            1,
        )
        .await;
        let id = h.email("top_up_action_needed:tu_1").await;
        let result = h.run(id).await.unwrap();
        assert!(
            matches!(result, Err(JobError::Permanent(_))),
            "{status}: {result:?}"
        );
        let n = h.get(id).await;
        assert_eq!(n.status, Status::Failed);
        assert_eq!(n.failure_reason, Some(format!("rejected:http_{status}")));
        assert!(n.last_error.unwrap().contains("not a valid address"));
        assert_eq!(h.job_state(id).await.0, "dead");
    }
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried() {
    for status in [429u16, 500, 502] {
        let h = Harness::new().await;
        Mock::given(method("POST"))
            .and(path(mailgun_messages_path()))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .expect(1)
            .mount(&h.mailgun)
            .await;
        mailgun_answers(&h, accepted("m2@mg.shiftcover.test"), 1).await;
        let id = h.email("top_up_action_needed:tu_1").await;
        let first = h.run(id).await.unwrap();
        assert!(
            matches!(first, Err(JobError::Retry(_))),
            "{status}: {first:?}"
        );
        assert_eq!(h.get(id).await.status, Status::Pending);
        h.run(id).await.unwrap().unwrap();
        let n = h.get(id).await;
        assert_eq!(
            (n.status, n.attempts, n.resent_after_ambiguity),
            (Status::Sent, 2, false)
        );
    }
}

#[tokio::test]
async fn after_a_timeout_an_email_is_sent_once_more_and_never_a_third_time() {
    let h = Harness::with(|s| s.mailgun.timeout_ms = 300).await;
    mailgun_answers(
        &h,
        accepted("slow@mg.shiftcover.test").set_delay(Duration::from_millis(1_500)),
        2,
    )
    .await;
    let id = h.email("top_up_action_needed:tu_1").await;

    // First attempt: ambiguous.
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));
    let n = h.get(id).await;
    assert_eq!(
        (n.status, n.resent_after_ambiguity),
        (Status::Sending, false)
    );
    assert!(n.ambiguous_at.is_some());

    // Second attempt: Mailgun cannot be asked, so it is sent once more — ambiguous again.
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));
    let n = h.get(id).await;
    assert_eq!(
        (n.status, n.resent_after_ambiguity),
        (Status::Sending, true)
    );

    // Third attempt: no third copy; the doubt is recorded.
    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Failed);
    assert_eq!(n.failure_reason.as_deref(), Some("ambiguous_delivery"));
    assert_eq!(h.job_state(id).await.0, "done");
    assert_eq!(posts(&h.mailgun.received_requests().await.unwrap()), 2);

    // Mailgun later reports delivery (found by our variable): the record is corrected.
    let mut conn = h.conn().await;
    let outcome = notifications::apply_mailgun_event(
        &mut conn,
        &serde_json::json!({"event-data": {
            "event": "delivered",
            "message": {"headers": {"message-id": "unknown-to-us@mg.shiftcover.test"}},
            "user-variables": {"notification_id": id.to_string()},
        }}),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        CallbackOutcome::Updated {
            id,
            status: Status::Delivered
        }
    );
    let n = h.get(id).await;
    assert_eq!((n.status, n.failure_reason), (Status::Delivered, None));
}

#[tokio::test]
async fn after_a_timeout_a_successful_resend_is_recorded_sent() {
    let h = Harness::with(|s| s.mailgun.timeout_ms = 300).await;
    Mock::given(method("POST"))
        .and(path(mailgun_messages_path()))
        .respond_with(accepted("slow@mg.shiftcover.test").set_delay(Duration::from_millis(1_500)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&h.mailgun)
        .await;
    mailgun_answers(&h, accepted("fast@mg.shiftcover.test"), 1).await;
    let id = h.email("top_up_action_needed:tu_1").await;
    assert!(matches!(h.run(id).await.unwrap(), Err(JobError::Retry(_))));
    h.run(id).await.unwrap().unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Sent);
    assert!(n.resent_after_ambiguity);
    assert_eq!(
        n.provider_message_id.as_deref(),
        Some("fast@mg.shiftcover.test")
    );
}
