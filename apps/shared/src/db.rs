//! The PostgreSQL pool and the embedded migrations.
//!
//! Connections are verified before reuse (`SELECT 1` on checkout), so after a database restart
//! the pool drops dead connections and opens new ones without a process restart.

use crate::settings::DatabaseSettings;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

/// Every migration in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// A pool of async PostgreSQL connections.
pub type DbPool = deadpool::Pool<AsyncPgConnection>;

/// A connection checked out of the pool.
pub type DbConn = deadpool::Object<AsyncPgConnection>;

/// Why a connection could not be had.
pub type PoolError = deadpool::PoolError;

/// Builds the pool. Connections open lazily, so this succeeds while the database is down.
pub fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Verified;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose(),
        config,
    );
    let timeout = Duration::from_millis(settings.acquire_timeout_ms);
    let pool = deadpool::Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// Applies pending migrations and returns the versions applied.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use diesel::Connection;
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        Ok(applied.iter().map(|v| v.to_string()).collect())
    })
    .await?
}
