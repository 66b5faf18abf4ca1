//! Rate limits against the real Redis, under a key prefix of this test's own.

use accounts::rate_limit::{self, RateLimitError};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::time::Duration;

async fn redis() -> ConnectionManager {
    let client = redis::Client::open(testkit::redis_url()).unwrap();
    client.get_connection_manager().await.unwrap()
}

fn retry_after(result: Result<(), RateLimitError>) -> u64 {
    match result {
        Err(RateLimitError::Limited(limited)) => limited.retry_after_secs,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

#[tokio::test]
async fn the_call_past_the_limit_is_refused_with_a_positive_retry_after() {
    let mut redis = redis().await;
    let prefix = testkit::unique_redis_prefix();
    let window = Duration::from_secs(60);
    for i in 0..3 {
        rate_limit::check(&mut redis, &prefix, "test", "subject-a", 3, window)
            .await
            .unwrap_or_else(|e| panic!("call {} refused: {e}", i + 1));
    }
    let wait =
        retry_after(rate_limit::check(&mut redis, &prefix, "test", "subject-a", 3, window).await);
    assert!((1..=60).contains(&wait), "{wait}");

    // Other subjects and buckets have their own counts.
    rate_limit::check(&mut redis, &prefix, "test", "subject-b", 3, window)
        .await
        .unwrap();
    rate_limit::check(&mut redis, &prefix, "other", "subject-a", 3, window)
        .await
        .unwrap();

    // The count lives under the documented key, with the window as its expiry.
    let key = shared::redis_conn::key(&prefix, ["rl", "test", "subject-a"]);
    let count: u64 = redis.get(&key).await.unwrap();
    assert_eq!(count, 4);
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((1..=60).contains(&ttl), "{ttl}");
    let err = rate_limit::check(&mut redis, &prefix, "test", "subject-a", 3, window)
        .await
        .unwrap_err();
    if let RateLimitError::Limited(limited) = err {
        assert_eq!(limited.user_error().code, "RATE_LIMITED");
    }
}

#[tokio::test]
async fn the_window_resets() {
    let mut redis = redis().await;
    let prefix = testkit::unique_redis_prefix();
    let window = Duration::from_millis(300);
    rate_limit::check(&mut redis, &prefix, "test", "s", 1, window)
        .await
        .unwrap();
    let wait = retry_after(rate_limit::check(&mut redis, &prefix, "test", "s", 1, window).await);
    assert_eq!(wait, 1, "sub-second waits round up to one second");
    tokio::time::sleep(Duration::from_millis(400)).await;
    rate_limit::check(&mut redis, &prefix, "test", "s", 1, window)
        .await
        .unwrap();
}

#[tokio::test]
async fn named_policies_apply_their_limits() {
    let mut redis = redis().await;
    let prefix = testkit::unique_redis_prefix();
    let policy = rate_limit::LOGIN_CODE_PER_PHONE;
    assert_eq!((policy.limit, policy.window.as_secs()), (5, 900));
    for _ in 0..policy.limit {
        rate_limit::check_policy(&mut redis, &prefix, &policy, "+447911123456")
            .await
            .unwrap();
    }
    let wait =
        retry_after(rate_limit::check_policy(&mut redis, &prefix, &policy, "+447911123456").await);
    assert!(wait > 890 && wait <= 900, "{wait}");

    assert_eq!(rate_limit::LOGIN_CODE_PER_CLIENT.limit, 20);
    assert_eq!(rate_limit::VERIFY_PER_PHONE.limit, 10);
    let per_key = rate_limit::partner_api_per_key(600);
    let per_partner = rate_limit::partner_api_per_partner(1_200);
    assert_eq!((per_key.limit, per_key.window.as_secs()), (600, 60));
    assert_eq!(
        (per_partner.limit, per_partner.window.as_secs()),
        (1_200, 60)
    );
    assert_ne!(per_key.bucket, per_partner.bucket, "counted apart");
}

#[tokio::test]
async fn concurrent_callers_share_one_count() {
    let prefix = testkit::unique_redis_prefix();
    let window = Duration::from_secs(60);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let prefix = prefix.clone();
        handles.push(tokio::spawn(async move {
            let mut redis = redis().await;
            rate_limit::check(&mut redis, &prefix, "test", "shared", 10, window)
                .await
                .is_ok()
        }));
    }
    let mut allowed = 0;
    for h in handles {
        if h.await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}
