//! Helpers shared by the end-to-end tests.

use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::core::Core;
use shared::settings::Settings;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestDb;

/// A running API server on its own database and Redis prefix.
pub struct TestApp {
    pub db: TestDb,
    pub core: Core,
    pub base: String,
    pub client: reqwest::Client,
    server: graphql::RunningServer,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::new().await.expect("test database");
        let mut settings = testkit::settings_for(&db);
        settings.http.workers = 1;
        tweak(&mut settings);
        let core = Core::new(settings, Arc::new(SystemClock)).expect("core");
        let server = graphql::start_server(core.clone()).expect("server starts");
        let base = format!("http://{}", server.addr);
        TestApp {
            db,
            core,
            base,
            client: reqwest::Client::new(),
            server,
        }
    }

    /// POSTs a GraphQL document and returns the JSON body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let res = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 200, "GraphQL answers 200");
        res.json().await.expect("JSON body")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.server.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The error code of the first GraphQL error.
pub fn first_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<no code>")
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Counts rows with a SQL query returning one `n` column.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.expect("conn");
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .expect("count query")
        .n
}
