//! `/readyz` reports outages by name and the server recovers by itself, with no restart.

use crate::support::{TestApp, eventually};
use serde_json::Value;
use std::time::Duration;
use testkit::throwaway::{ThrowawayPostgres, ThrowawayRedis};

async fn ready(app: &TestApp) -> (u16, Value) {
    let res = app.get("/readyz").await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn readiness_follows_a_postgres_restart() {
    let pg = ThrowawayPostgres::start().expect("throwaway postgres");
    let url = pg.url("postgres");
    let app = TestApp::spawn_with(|s| {
        s.database.url = shared::Secret::new(url.clone());
        s.database.acquire_timeout_ms = 500;
    })
    .await;
    assert_eq!(ready(&app).await.0, 200);

    pg.stop().unwrap();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503);
    assert_ne!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(body["checks"]["redis"], "ok");

    pg.start_server().unwrap();
    let recovered = eventually(Duration::from_secs(10), || async {
        ready(&app).await.0 == 200
    })
    .await;
    assert!(
        recovered,
        "ready again within seconds, without restarting serve"
    );
}

#[tokio::test]
async fn readiness_follows_a_redis_restart() {
    let mut redis = ThrowawayRedis::start().expect("throwaway redis");
    let url = redis.url();
    let app = TestApp::spawn_with(|s| s.redis.url = shared::Secret::new(url.clone())).await;
    assert_eq!(ready(&app).await.0, 200);

    redis.stop();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503);
    assert_ne!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok");

    redis.start_server().unwrap();
    let recovered = eventually(Duration::from_secs(15), || async {
        ready(&app).await.0 == 200
    })
    .await;
    assert!(recovered, "ready again after redis returns");
}
