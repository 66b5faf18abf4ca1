//! Recording notifications: rendering, one row per cause, the job in the same transaction.

use crate::support::*;
use diesel_async::AsyncConnection;
use notifications::{
    Channel, NewNotification, NotificationsError, Status, Template, enqueue_notification,
    enqueue_notifications,
};

fn sms(cause: &str, vars: notifications::Vars) -> NewNotification {
    NewNotification {
        cause: cause.into(),
        channel: Channel::Sms,
        template: Template::SignInCode,
        recipient: PHONE.into(),
        driver_id: None,
        vars,
    }
}

#[tokio::test]
async fn enqueueing_records_the_rendered_message_and_its_job_together() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let driver = uuid::Uuid::now_v7();
    let id = enqueue_notification(
        &mut conn,
        NewNotification {
            cause: "top_up_action_needed:tu_1".into(),
            channel: Channel::Email,
            template: Template::TopUpActionNeeded,
            recipient: EMAIL.into(),
            driver_id: Some(driver),
            vars: top_up_vars(),
        },
    )
    .await
    .unwrap();
    assert!(id.to_string().starts_with("ntf_"));
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Pending);
    assert_eq!(n.driver_id, Some(driver));
    assert_eq!(
        n.subject.as_deref(),
        Some("Action needed: confirm your £10.00 top-up")
    );
    assert!(
        n.body_text
            .contains("https://app.shiftcover.test/top-ups/tu_1?step=3ds&x=<y>")
    );
    let html = n.body_html.unwrap();
    assert!(
        html.contains("href=\"https://app.shiftcover.test/top-ups/tu_1?step=3ds&amp;x=&lt;y&gt;\"")
    );
    assert_eq!(h.job_state(id).await, ("pending".into(), 0));
    let payload: serde_json::Value = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use shared::schema::outbox_jobs;
        outbox_jobs::table
            .filter(outbox_jobs::idempotency_key.eq(id.to_string()))
            .select(outbox_jobs::payload)
            .first(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(
        payload,
        serde_json::json!({"notification_id": id.to_string()})
    );
}

#[tokio::test]
async fn the_same_cause_twice_makes_one_notification_and_one_job() {
    let h = Harness::new().await;
    let first = h.sms("login_code:lgc_1", "111111").await;
    let second = h.sms("login_code:lgc_1", "222222").await;
    assert_eq!(first, second);
    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notifications").await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM outbox_jobs").await,
        1
    );
    // The first report wins: the row is not rewritten.
    assert!(h.get(first).await.body_text.contains("111111"));
    // Another cause is another message.
    let third = h.sms("login_code:lgc_2", "333333").await;
    assert_ne!(third, first);
    assert_eq!(
        notifications::latest_body_for(&mut conn, PHONE)
            .await
            .as_deref(),
        Some("Your ShiftCover code is 333333. It expires in 5 minutes. Never share it.")
    );
    assert_eq!(
        notifications::latest_body_for(&mut conn, "+447700900999").await,
        None
    );
}

#[tokio::test]
async fn several_recorded_at_once_are_stored_as_one_at_a_time_and_known_causes_are_skipped() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let earlier = h.sms("login_code:lgc_0", "000000").await;
    let driver = uuid::Uuid::now_v7();
    let code = |c: &str| notifications::vars([("code", c), ("minutes", "5")]);
    let news = vec![
        sms("login_code:lgc_1", code("111111")),
        // Already recorded: skipped, and the stored text is not rewritten.
        sms("login_code:lgc_0", code("999999")),
        NewNotification {
            cause: "top_up_action_needed:tu_1".into(),
            channel: Channel::Email,
            template: Template::TopUpActionNeeded,
            recipient: EMAIL.into(),
            driver_id: Some(driver),
            vars: top_up_vars(),
        },
        // Cannot be rendered: stored failed, with no job.
        sms("login_code:lgc_2", notifications::vars([("minutes", "5")])),
        // The same cause twice in one call: the first one counts.
        sms("login_code:lgc_3", code("333333")),
        sms("login_code:lgc_3", code("444444")),
    ];
    let ids = enqueue_notifications(&mut conn, &news).await.unwrap();
    assert_eq!(ids.len(), 6);
    assert!(ids[1].is_none() && ids[5].is_none(), "{ids:?}");
    assert!(h.get(earlier).await.body_text.contains("000000"));
    let sms1 = h.get(ids[0].unwrap()).await;
    assert_eq!(sms1.status, Status::Pending);
    assert_eq!(
        sms1.body_text,
        "Your ShiftCover code is 111111. It expires in 5 minutes. Never share it."
    );
    assert_eq!(h.job_state(ids[0].unwrap()).await, ("pending".into(), 0));
    // The email is what one at a time records for the same message.
    let email = h.get(ids[2].unwrap()).await;
    let alone = enqueue_notification(
        &mut conn,
        NewNotification {
            cause: "top_up_action_needed:tu_2".into(),
            ..news[2].clone()
        },
    )
    .await
    .unwrap();
    let alone = h.get(alone).await;
    assert_eq!(email.driver_id, Some(driver));
    assert_eq!(
        (
            &email.subject,
            &email.body_text,
            &email.body_html,
            email.status
        ),
        (
            &alone.subject,
            &alone.body_text,
            &alone.body_html,
            alone.status
        )
    );
    assert_eq!(h.job_state(ids[2].unwrap()).await, ("pending".into(), 0));
    let failed = h.get(ids[3].unwrap()).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("missing_variable:code")
    );
    assert!(failed.failed_at.is_some());
    assert!(h.get(ids[4].unwrap()).await.body_text.contains("333333"));
    // Jobs: the earlier text, the email alone, and three of this call (not the failed one).
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM outbox_jobs").await,
        5
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notifications").await,
        6
    );
    // A bad recipient refuses the whole call, before anything is written.
    let err = enqueue_notifications(
        &mut conn,
        &[
            sms("login_code:lgc_4", code("1")),
            NewNotification {
                recipient: "not a phone".into(),
                ..sms("login_code:lgc_5", code("2"))
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, NotificationsError::InvalidRecipient(_)),
        "{err:?}"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notifications").await,
        6
    );
}

#[tokio::test]
async fn a_missing_variable_records_a_failed_notification_and_no_job() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let id = enqueue_notification(
        &mut conn,
        sms("login_code:lgc_x", notifications::vars([("minutes", "5")])),
    )
    .await
    .unwrap();
    let n = h.get(id).await;
    assert_eq!(n.status, Status::Failed);
    assert_eq!(n.failure_reason.as_deref(), Some("missing_variable:code"));
    assert_eq!(n.body_text, "");
    assert!(n.failed_at.is_some());
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM outbox_jobs").await,
        0
    );
}

#[tokio::test]
async fn a_rolled_back_cause_leaves_no_notification_and_no_job() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let result = conn
        .transaction::<(), NotificationsError, _>(async |conn| {
            enqueue_notification(
                conn,
                sms(
                    "login_code:lgc_r",
                    notifications::vars([("code", "1"), ("minutes", "5")]),
                ),
            )
            .await?;
            Err(NotificationsError::InvalidCause)
        })
        .await;
    assert!(result.is_err());
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notifications").await,
        0
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM outbox_jobs").await,
        0
    );
}

#[tokio::test]
async fn bad_recipients_and_causes_are_refused() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let v = || notifications::vars([("code", "1"), ("minutes", "5")]);
    for bad in ["07911123456", "+0123", "+44 7911 123456", ""] {
        let mut n = sms("c", v());
        n.recipient = bad.into();
        let err = enqueue_notification(&mut conn, n).await.unwrap_err();
        assert!(
            matches!(err, NotificationsError::InvalidRecipient(_)),
            "{bad}"
        );
    }
    for bad in [
        "sarah",
        "sarah@",
        "@example.com",
        "a b@example.com",
        "a@b@example.com",
        "Sarah <s@example.com>",
    ] {
        let mut n = sms("c", v());
        n.channel = Channel::Email;
        n.recipient = bad.into();
        let err = enqueue_notification(&mut conn, n).await.unwrap_err();
        assert!(
            matches!(err, NotificationsError::InvalidRecipient(_)),
            "{bad}"
        );
    }
    let err = enqueue_notification(&mut conn, sms("", v()))
        .await
        .unwrap_err();
    assert!(matches!(err, NotificationsError::InvalidCause));
    let err = enqueue_notification(&mut conn, sms(&"x".repeat(201), v()))
        .await
        .unwrap_err();
    assert!(matches!(err, NotificationsError::InvalidCause));
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notifications").await,
        0
    );
}

#[tokio::test]
async fn erasing_a_recipient_scrubs_their_messages_and_stops_unsent_ones() {
    let h = Harness::new().await;
    let driver = uuid::Uuid::now_v7();
    let mut conn = h.conn().await;
    // One by phone only (sent before the driver existed), one by driver id, one for someone else.
    let by_phone = h.sms("login_code:lgc_a", "123456").await;
    let by_driver = enqueue_notification(
        &mut conn,
        NewNotification {
            cause: "top_up_action_needed:tu_9".into(),
            channel: Channel::Email,
            template: Template::TopUpActionNeeded,
            recipient: "old-address@example.com".into(),
            driver_id: Some(driver),
            vars: top_up_vars(),
        },
    )
    .await
    .unwrap();
    let other = enqueue_notification(
        &mut conn,
        NewNotification {
            recipient: "+447700900555".into(),
            ..sms(
                "login_code:lgc_b",
                notifications::vars([("code", "9"), ("minutes", "5")]),
            )
        },
    )
    .await
    .unwrap();

    let erased = notifications::erase_recipient(&mut conn, Some(driver), &[PHONE, EMAIL])
        .await
        .unwrap();
    assert_eq!(erased, 2);
    for id in [by_phone, by_driver] {
        let n = h.get(id).await;
        assert_eq!(n.status, Status::Failed);
        assert_eq!(n.failure_reason.as_deref(), Some("recipient_erased"));
        assert_eq!(n.recipient, "erased");
        assert_eq!(
            (n.subject, n.body_text.as_str(), n.body_html),
            (None, "", None)
        );
        assert!(n.erased_at.is_some());
    }
    assert_eq!(h.get(other).await.status, Status::Pending);
    // Erasing again finds nothing left.
    assert_eq!(
        notifications::erase_recipient(&mut conn, Some(driver), &[PHONE])
            .await
            .unwrap(),
        0
    );

    // The delivery job then completes without sending anything.
    let result = h.run(by_phone).await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(h.job_state(by_phone).await.0, "done");
    assert!(h.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_is_resent_as_worded_once_per_key_but_never_a_sign_in_code() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let driver = uuid::Uuid::now_v7();
    let original = enqueue_notification(
        &mut conn,
        NewNotification {
            cause: "top_up_action_needed:tu_9".into(),
            channel: Channel::Email,
            template: Template::TopUpActionNeeded,
            recipient: EMAIL.into(),
            driver_id: Some(driver),
            vars: top_up_vars(),
        },
    )
    .await
    .unwrap();
    let (copy, new) = notifications::resend_notification(&mut conn, original, "page-1")
        .await
        .unwrap();
    assert!(new);
    assert_ne!(copy, original);
    let (again, new_again) = notifications::resend_notification(&mut conn, original, "page-1")
        .await
        .unwrap();
    assert_eq!((again, new_again), (copy, false), "one copy per key");
    let (a, b) = (h.get(original).await, h.get(copy).await);
    assert_eq!(b.cause, format!("resend:{original}:page-1"));
    assert_eq!(
        (&b.subject, &b.body_text, &b.body_html, &b.recipient),
        (&a.subject, &a.body_text, &a.body_html, &a.recipient)
    );
    assert_eq!(b.status, Status::Pending);
    assert_eq!(
        h.job_state(copy).await,
        ("pending".into(), 0),
        "its own job"
    );
    let listed = notifications::list_for_driver(&mut conn, driver, &[], 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    let code = enqueue_notification(
        &mut conn,
        sms(
            "login_code:lgc_9",
            notifications::vars([("code", "123456"), ("minutes", "10")]),
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        notifications::resend_notification(&mut conn, code, "page-1").await,
        Err(NotificationsError::NotResendable(_))
    ));
    let by_phone = notifications::list_for_driver(&mut conn, driver, &[PHONE.to_owned()], 10)
        .await
        .unwrap();
    assert_eq!(by_phone.len(), 3, "the code went to the driver's phone");
    assert!(matches!(
        notifications::resend_notification(
            &mut conn,
            notifications::NotificationId::new(),
            "page-1"
        )
        .await,
        Err(NotificationsError::NotFound)
    ));
}
