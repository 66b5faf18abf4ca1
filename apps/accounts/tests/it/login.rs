//! SMS code sign-in, driver sessions.

use crate::support::*;
use accounts::schema::{driver_sessions, drivers, login_codes};
use accounts::{
    AccountsError, authenticate_driver, request_login_code, sign_out, sign_out_everywhere,
    verify_login_code,
};
use chrono::Duration;
use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use shared::Clock;
use testkit::TestDb;

#[tokio::test]
async fn requesting_a_code_stores_only_its_hash_and_records_the_sms_for_delivery() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();

    let requested = request_login_code(&mut conn, &clock, " 07911 123456 ", &settings())
        .await
        .unwrap();
    assert_eq!(requested.phone_e164, PHONE_E164);
    assert_eq!(requested.expires_at, clock.now() + Duration::minutes(5));

    let sms = sms_sent(&mut conn).await;
    assert_eq!(sms.len(), 1);
    let sms = &sms[0];
    assert_eq!(sms.recipient, PHONE_E164);
    assert_eq!(sms.template, notifications::Template::SignInCode);
    assert_eq!(sms.status, notifications::Status::Pending);
    // A first sign-in: no driver exists yet.
    assert_eq!(sms.driver_id, None);
    let code = code_in(&sms.body_text);
    assert_eq!(
        sms.body_text,
        format!("Your ShiftCover code is {code}. It expires in 5 minutes. Never share it.")
    );
    // Its delivery job committed with it, on the notifications queue.
    assert_eq!(
        delivery_jobs(&mut conn).await,
        vec![("notifications".to_owned(), sms.id.to_string())]
    );
    let (id, hash, attempts, max_attempts): (accounts::LoginCodeId, Vec<u8>, i32, i32) =
        login_codes::table
            .select((
                login_codes::id,
                login_codes::code_hash,
                login_codes::attempts,
                login_codes::max_attempts,
            ))
            .first(&mut conn)
            .await
            .unwrap();
    // The notification's cause names the code row; the row holds no plaintext.
    assert_eq!(sms.cause, format!("login_code:{id}"));
    assert_eq!(hash.len(), 32);
    assert!(!hash.windows(6).any(|w| w == code.as_bytes()));
    assert_eq!((attempts, max_attempts), (0, 5));
}

#[tokio::test]
async fn a_code_for_a_known_driver_names_the_driver_on_its_sms() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let sms = sms_sent(&mut conn).await;
    assert_eq!(sms.len(), 2);
    assert_eq!(sms[1].driver_id, Some(me.uuid()));
}

#[tokio::test]
async fn a_malformed_phone_is_refused_and_nothing_is_sent() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    for bad in ["", "12345", "not a phone", "+44 20 7946 0018"] {
        let err = request_login_code(&mut conn, &clock(), bad, &settings())
            .await
            .unwrap_err();
        assert_eq!(code(&err), "INVALID_PHONE", "{bad}");
        assert_eq!(field(&err).as_deref(), Some("phone"));
    }
    assert!(sms_sent(&mut conn).await.is_empty());
    assert!(delivery_jobs(&mut conn).await.is_empty());
    let err = verify_login_code(&mut conn, &clock(), "12345", "123456", &settings())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_PHONE");
}

#[tokio::test]
async fn a_missing_pepper_fails_closed_as_an_internal_error() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let weak = accounts::LoginCodeSettings {
        pepper: shared::Secret::new("short"),
    };
    let err = request_login_code(&mut conn, &clock(), PHONE, &weak)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountsError::Internal(_)));
    assert!(err.user_error().is_none());
    assert!(sms_sent(&mut conn).await.is_empty());
    assert!(delivery_jobs(&mut conn).await.is_empty());
}

#[tokio::test]
async fn the_right_code_signs_in_creates_the_driver_once_and_opens_a_session() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();

    let first = sign_in(&mut conn, &clock, PHONE).await;
    assert!(first.new_driver);
    assert!(first.token.starts_with("sct_"));
    assert_eq!(first.token.len(), 4 + 43);
    assert_eq!(first.expires_at, clock.now() + Duration::days(30));

    let principal = authenticate_driver(&mut conn, &clock, &first.token)
        .await
        .unwrap();
    assert_eq!(principal.driver_id, first.driver_id);

    // Only the token's hash is stored.
    let hashes: Vec<Vec<u8>> = driver_sessions::table
        .select(driver_sessions::token_hash)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert_eq!(
        hashes[0],
        <sha2::Sha256 as sha2::Digest>::digest(first.token.as_bytes()).to_vec()
    );

    // A second sign-in from another device finds the same driver.
    clock.advance(Duration::hours(1));
    let second = sign_in(&mut conn, &clock, "+447911123456").await;
    assert!(!second.new_driver);
    assert_eq!(second.driver_id, first.driver_id);
    assert_ne!(second.token, first.token);
    let drivers: i64 = drivers::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(drivers, 1);

    let audit = audit_rows(&mut conn, "driver.signed_in").await;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].0, "driver");
    assert_eq!(
        audit[0].1.as_deref(),
        Some(first.driver_id.to_string().as_str())
    );
    assert_eq!(audit[0].3["new_driver"], true);
    assert_eq!(audit[1].3["new_driver"], false);
}

#[tokio::test]
async fn a_wrong_code_counts_a_try_and_the_right_one_still_works_after() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };

    let err = verify_login_code(&mut conn, &clock, PHONE, wrong, &settings())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_CODE");
    assert_eq!(field(&err).as_deref(), Some("code"));
    let attempts: i32 = login_codes::table
        .select(login_codes::attempts)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(attempts, 1);

    // Spaces in a pasted code are ignored.
    let spaced = format!("{} {}", &right[..3], &right[3..]);
    let signed_in = verify_login_code(&mut conn, &clock, PHONE, &spaced, &settings())
        .await
        .unwrap();
    assert!(signed_in.new_driver);
}

#[tokio::test]
async fn five_wrong_tries_lock_the_code_even_for_the_right_code() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;
    let wrong = if right == "999999" {
        "999998"
    } else {
        "999999"
    };
    for _ in 0..5 {
        let err = verify_login_code(&mut conn, &clock, PHONE, wrong, &settings())
            .await
            .unwrap_err();
        assert_eq!(code(&err), "INVALID_CODE");
    }
    let err = verify_login_code(&mut conn, &clock, PHONE, &right, &settings())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TOO_MANY_ATTEMPTS");
    assert_eq!(field(&err).as_deref(), Some("code"));
    let sessions: i64 = driver_sessions::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(sessions, 0);

    // A new code starts a fresh allowance.
    let signed_in = sign_in(&mut conn, &clock, PHONE).await;
    assert!(signed_in.new_driver);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;

    clock.advance(Duration::minutes(5));
    let err = verify_login_code(&mut conn, &clock, PHONE, &right, &settings())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CODE_EXPIRED");
    assert_eq!(field(&err).as_deref(), Some("code"));
}

#[tokio::test]
async fn a_code_works_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;
    verify_login_code(&mut conn, &clock, PHONE, &right, &settings())
        .await
        .unwrap();
    let err = verify_login_code(&mut conn, &clock, PHONE, &right, &settings())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CODE_ALREADY_USED");
}

#[tokio::test]
async fn two_concurrent_verifications_of_one_code_sign_in_exactly_once() {
    let db = TestDb::new().await.unwrap();
    let mut a = db.conn().await.unwrap();
    let mut b = db.conn().await.unwrap();
    let mut blocker = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut a, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut a, PHONE_E164).await;

    // Line both tries up: a third connection holds the code row's lock, so both read the code,
    // then both wait at their first write; releasing it lets them race from there.
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM login_codes WHERE phone = '{PHONE_E164}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let s = settings();
    let (ra, rb, ()) = tokio::join!(
        verify_login_code(&mut a, &clock, PHONE, &right, &s),
        verify_login_code(&mut b, &clock, PHONE, &right, &s),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            blocker.batch_execute("COMMIT").await.unwrap();
        },
    );
    let (ok, err) = match (ra, rb) {
        (Ok(ok), Err(err)) | (Err(err), Ok(ok)) => (ok, err),
        (ra, rb) => panic!("expected one success and one failure, got {ra:?} and {rb:?}"),
    };
    assert_eq!(code(&err), "CODE_ALREADY_USED");
    assert!(ok.new_driver);
    let sessions: i64 = driver_sessions::table
        .count()
        .get_result(&mut a)
        .await
        .unwrap();
    assert_eq!(sessions, 1);
    let drivers: i64 = drivers::table.count().get_result(&mut a).await.unwrap();
    assert_eq!(drivers, 1);
    // Both tries were counted: each reached the code before either used it.
    let attempts: i32 = login_codes::table
        .select(login_codes::attempts)
        .first(&mut a)
        .await
        .unwrap();
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn a_phone_without_a_code_answers_exactly_like_a_wrong_code() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();

    let none = verify_login_code(&mut conn, &clock, OTHER_PHONE, "123456", &settings())
        .await
        .unwrap_err();

    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    let wrong = verify_login_code(&mut conn, &clock, PHONE, wrong, &settings())
        .await
        .unwrap_err();

    assert_eq!(code(&none), "INVALID_CODE");
    assert_eq!(none.user_error(), wrong.user_error());
    assert_eq!(none.to_string(), wrong.to_string());
}

#[tokio::test]
async fn a_new_code_supersedes_the_old_one() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let old = latest_code(&mut conn, PHONE_E164).await;
    clock.advance(Duration::seconds(30));
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let new = latest_code(&mut conn, PHONE_E164).await;
    assert_eq!(sms_sent(&mut conn).await.len(), 2);

    if old != new {
        let err = verify_login_code(&mut conn, &clock, PHONE, &old, &settings())
            .await
            .unwrap_err();
        assert_eq!(code(&err), "INVALID_CODE");
    }
    verify_login_code(&mut conn, &clock, PHONE, &new, &settings())
        .await
        .unwrap();
    let superseded: i64 = login_codes::table
        .filter(login_codes::superseded_at.is_not_null())
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(superseded, 1);

    // Neither text is kept once its code is worthless: the replaced one, still queued, is
    // withdrawn and will not be sent; the used one is blanked.
    let sms = sms_sent(&mut conn).await;
    assert_eq!(sms.len(), 2);
    for n in &sms {
        assert_eq!(n.body_text, "", "{n:?}");
        assert_eq!(n.status, notifications::Status::Failed);
        assert_eq!(n.failure_reason.as_deref(), Some("withdrawn"));
    }
}

#[tokio::test]
async fn a_sent_code_text_is_blanked_once_the_code_is_used() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let right = latest_code(&mut conn, PHONE_E164).await;
    // The SMS went out before the driver typed the code.
    conn.batch_execute("UPDATE notifications SET status = 'sent', sent_at = now()")
        .await
        .unwrap();
    verify_login_code(&mut conn, &clock, PHONE, &right, &settings())
        .await
        .unwrap();
    let sms = sms_sent(&mut conn).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].body_text, "");
    // Its delivery record stands.
    assert_eq!(sms[0].status, notifications::Status::Sent);
    assert_eq!(sms[0].failure_reason, None);
}

#[tokio::test]
async fn authentication_tells_unknown_expired_and_revoked_sessions_apart() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let signed_in = sign_in(&mut conn, &clock, PHONE).await;

    for bad in [
        "",
        "Bearer nonsense",
        "sct_short",
        "sct_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let err = authenticate_driver(&mut conn, &clock, bad)
            .await
            .unwrap_err();
        assert_eq!(auth_code(&err), "UNAUTHENTICATED", "{bad}");
    }

    // Expired: the token stops working 30 days after sign-in.
    clock.advance(Duration::days(30) - Duration::seconds(1));
    authenticate_driver(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap();
    clock.advance(Duration::seconds(1));
    let err = authenticate_driver(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "SESSION_EXPIRED");

    // Revoked: signing out ends the session at once, and signing out again is harmless.
    let fresh = sign_in(&mut conn, &clock, PHONE).await;
    let principal = authenticate_driver(&mut conn, &clock, &fresh.token)
        .await
        .unwrap();
    assert!(
        sign_out(&mut conn, &clock, principal.session_id)
            .await
            .unwrap()
    );
    assert!(
        !sign_out(&mut conn, &clock, principal.session_id)
            .await
            .unwrap()
    );
    let err = authenticate_driver(&mut conn, &clock, &fresh.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "SESSION_REVOKED");
    assert_eq!(err.user_error().unwrap().code, "SESSION_REVOKED");
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_live_session_of_that_driver_only() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let phone_1 = sign_in(&mut conn, &clock, PHONE).await;
    let phone_2 = sign_in(&mut conn, &clock, PHONE).await;
    let other = sign_in(&mut conn, &clock, OTHER_PHONE).await;

    let ended = sign_out_everywhere(&mut conn, &clock, phone_1.driver_id)
        .await
        .unwrap();
    assert_eq!(ended, 2);
    for token in [&phone_1.token, &phone_2.token] {
        let err = authenticate_driver(&mut conn, &clock, token)
            .await
            .unwrap_err();
        assert_eq!(auth_code(&err), "SESSION_REVOKED");
    }
    authenticate_driver(&mut conn, &clock, &other.token)
        .await
        .unwrap();
    assert_eq!(
        sign_out_everywhere(&mut conn, &clock, phone_1.driver_id)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn last_seen_is_refreshed_at_most_every_few_minutes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let signed_in = sign_in(&mut conn, &clock, PHONE).await;
    let start = clock.now();
    let last_seen =
        async |conn: &mut diesel_async::AsyncPgConnection| -> chrono::DateTime<chrono::Utc> {
            driver_sessions::table
                .select(driver_sessions::last_seen_at)
                .first(conn)
                .await
                .unwrap()
        };

    clock.advance(Duration::minutes(2));
    authenticate_driver(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap();
    assert_eq!(last_seen(&mut conn).await, start);
    clock.advance(Duration::minutes(4));
    authenticate_driver(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap();
    assert_eq!(last_seen(&mut conn).await, clock.now());
}
