//! Test support: a fresh PostgreSQL database per test, cloned from a migrated template, and a
//! unique Redis key prefix per test. Talks to the real services, never to mocks of our storage.
//!
//! The template is built once per set of migrations (its name carries a hash of the migration
//! files) under a PostgreSQL advisory lock, so parallel test processes build it once between them.
//! Each test's database is dropped when its [`TestDb`] is dropped, except during a full run of the
//! suite (`infra/dev/test.sh`), which sets [`KEEP_DATABASES_ENV`] to a file: each test database's
//! name is appended to it when created, the database is kept, and after the suite the script runs
//! `shiftcover ledger check` over every database listed (so every money movement any test made is
//! checked: each ledger transaction sums to zero, each wallet equals its postings) and then drops
//! them. A test that breaks the ledger on purpose calls [`TestDb::broken_on_purpose`]: its
//! database is dropped as usual and left out of the check.

pub mod localstripe;
pub mod throwaway;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use sha2::{Digest, Sha256};
use shared::Secret;
use shared::db::{DbPool, build_pool, run_migrations};
use shared::settings::{DatabaseSettings, Environment, LogFormat, Settings};
use std::path::Path;

/// The server and database tests connect to; `postgres` is the maintenance database.
pub fn admin_url() -> String {
    std::env::var("SHIFTCOVER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis tests use.
pub fn redis_url() -> String {
    std::env::var("SHIFTCOVER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn url_with_db(base: &str, db: &str) -> String {
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").map_or(0, |j| j + 2) => {
            format!("{}/{db}", &base[..i])
        }
        _ => format!("{base}/{db}"),
    }
}

fn migrations_fingerprint() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&f).unwrap_or_default());
    }
    hex::encode(&hasher.finalize()[..6])
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

async fn admin_conn() -> anyhow::Result<AsyncPgConnection> {
    Ok(AsyncPgConnection::establish(&admin_url()).await?)
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Builds the migrated template once; returns its name.
pub async fn ensure_template() -> anyhow::Result<String> {
    let name = format!("sc_tpl_{}", migrations_fingerprint());
    let mut conn = admin_conn().await?;
    conn.batch_execute("SELECT pg_advisory_lock(727274)")
        .await?;
    let result = async {
        let exists: Exists = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists",
        )
        .bind::<diesel::sql_types::Text, _>(&name)
        .get_result(&mut conn)
        .await?;
        if !exists.exists {
            let building = format!("{name}_building");
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .await?;
            conn.batch_execute(&format!("CREATE DATABASE {building}"))
                .await?;
            run_migrations(&url_with_db(&admin_url(), &building)).await?;
            conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                .await?;
            conn.batch_execute(&format!(
                "ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    conn.batch_execute("SELECT pg_advisory_unlock(727274)")
        .await?;
    result.map(|_| name)
}

/// When set to a file path, test databases are kept after their test and their names appended
/// to that file, for the suite's closing ledger check (see the crate docs).
pub const KEEP_DATABASES_ENV: &str = "SHIFTCOVER_TEST_KEEP_DATABASES";

/// Appends a database name to the list of kept databases: one short line in append mode, so lines
/// from parallel test processes never interleave.
fn record_kept(list: &Path, name: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)?;
    file.write_all(format!("{name}\n").as_bytes())?;
    Ok(())
}

fn keep_list() -> Option<std::path::PathBuf> {
    std::env::var_os(KEEP_DATABASES_ENV)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

/// A database of one test's own, dropped when this value is dropped (or, in a full suite run,
/// kept for the closing ledger check: see the crate docs).
pub struct TestDb {
    name: String,
    url: String,
    pool: DbPool,
    keep: std::sync::atomic::AtomicBool,
}

impl TestDb {
    /// Clones the migrated template into a new database.
    pub async fn new() -> anyhow::Result<Self> {
        let template = ensure_template().await?;
        let name = format!("sc_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_conn().await?;
        conn.batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"
        ))
        .await?;
        let keep = match keep_list() {
            Some(list) => {
                record_kept(&list, &name)?;
                true
            }
            None => false,
        };
        let url = url_with_db(&admin_url(), &name);
        let pool = build_pool(&DatabaseSettings {
            url: Secret::new(url.clone()),
            pool_size: 8,
            acquire_timeout_ms: 5_000,
            batch_concurrency: 1,
        })?;
        Ok(Self {
            name,
            url,
            pool,
            keep: std::sync::atomic::AtomicBool::new(keep),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For a test that breaks invariants on purpose (an unbalanced ledger, to see it reported):
    /// the database is dropped when the test ends and never given to the suite's closing check.
    pub fn broken_on_purpose(&self) {
        std::sync::atomic::AtomicBool::store(
            &self.keep,
            false,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on the database.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// A fresh connection.
    pub async fn conn(&self) -> anyhow::Result<shared::DbConn> {
        Ok(self.pool.get().await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.pool.close();
        if std::sync::atomic::AtomicBool::load(&self.keep, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // Async work cannot run in Drop; a short-lived thread with its own runtime drops the database.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = admin_conn().await {
                        let _ = conn
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A key prefix no other test uses.
pub fn unique_redis_prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

/// Settings pointing at a test's database and Redis prefix, with test-friendly job timings.
pub fn settings_for(db: &TestDb) -> Settings {
    let mut s = Settings {
        environment: Environment::Test,
        ..Settings::default()
    };
    s.database.url = Secret::new(db.url());
    s.database.pool_size = 8;
    s.redis.url = Secret::new(redis_url());
    s.redis.key_prefix = unique_redis_prefix();
    s.http.bind = "127.0.0.1:0".into();
    s.log.format = LogFormat::Pretty;
    s.jobs.relay_idle_ms = 20;
    s.jobs.requeue_after_secs = 5;
    s.jobs.stalled_after_secs = 5;
    // The suite's webhook receivers (wiremock) listen on 127.0.0.1.
    s.partner_webhooks.allow_loopback = true;
    s
}

/// The one `bigint` column `n` of the one row `sql` answers (a `SELECT count(*) AS n …`).
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    Ok(diesel::sql_query(sql).get_result::<N>(conn).await?.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_last_path_segment() {
        assert_eq!(
            url_with_db("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_db("postgres://postgres@127.0.0.1:5432", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
    }

    #[tokio::test]
    async fn each_test_database_is_migrated_and_separate() {
        let a = TestDb::new().await.unwrap();
        let b = TestDb::new().await.unwrap();
        assert_ne!(a.url(), b.url());
        let mut conn = a.conn().await.unwrap();
        conn.batch_execute(
            "INSERT INTO demo_pings (job_id, message, worker) VALUES (gen_random_uuid(), 'a', 't')",
        )
        .await
        .unwrap();
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query("SELECT count(*) AS n FROM demo_pings")
            .get_result(&mut b.conn().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n.n, 0);
    }
}
