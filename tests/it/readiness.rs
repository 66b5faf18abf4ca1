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

#[tokio::test]
async fn readiness_names_outcomes_never_raw_errors() {
    // A database that does not exist and a Redis nobody listens on: their errors name the
    // database, the user and the address, none of which may reach the caller.
    let missing = format!("sc_missing_{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(|s| {
        s.database.url = shared::Secret::new(format!(
            "{}/{missing}",
            testkit::admin_url().rsplit_once('/').unwrap().0
        ));
        s.database.acquire_timeout_ms = 500;
        s.redis.url = shared::Secret::new("redis://127.0.0.1:9/0");
    })
    .await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status().as_u16(), 503);
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    for check in ["postgres", "redis"] {
        let outcome = body["checks"][check].as_str().unwrap();
        assert!(
            ["unavailable", "failed", "timed_out"].contains(&outcome),
            "{check}: {body}"
        );
    }
    for leak in [
        missing.as_str(),
        "postgres://",
        "127.0.0.1",
        ":9",
        "error",
        "refused",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[derive(diesel::QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn backend_pid(conn: &mut diesel_async::AsyncPgConnection) -> diesel::QueryResult<i32> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<BackendPid>(conn)
        .await
        .map(|r| r.pid)
}

/// The pool checks a connection on checkout without a query (no `SELECT 1`): one whose backend
/// the server ended is still never handed out again; a new one takes its place.
#[tokio::test]
async fn the_pool_replaces_a_connection_the_server_closed() {
    use diesel_async::RunQueryDsl;
    let db = testkit::TestDb::new().await.unwrap();
    let pool = shared::db::build_pool(&shared::settings::DatabaseSettings {
        url: shared::Secret::new(db.url().to_owned()),
        pool_size: 1,
        acquire_timeout_ms: 2_000,
        batch_concurrency: 1,
    })
    .unwrap();
    let first = {
        let mut conn = pool.get().await.unwrap();
        backend_pid(&mut conn).await.unwrap()
    };
    let mut admin = db.conn().await.unwrap();
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<diesel::sql_types::Integer, _>(first)
        .execute(&mut admin)
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut gone = false;
    for _ in 0..50 {
        let left: Count =
            diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1")
                .bind::<diesel::sql_types::Integer, _>(first)
                .get_result(&mut admin)
                .await
                .unwrap();
        if left.n == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the terminated backend exited");
    // The client learns of the closed socket in the background, as it would between requests.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut conn = pool.get().await.unwrap();
    let second = backend_pid(&mut conn)
        .await
        .expect("the first query on the checked-out connection succeeds");
    assert_ne!(first, second, "a new connection replaced the closed one");
}
