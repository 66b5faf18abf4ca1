//! The PostgreSQL pool and the embedded migrations.
//!
//! A connection is checked before reuse without a round trip to the database: one whose socket
//! the server has closed (a restart, a terminated backend, an idle timeout) or whose transaction
//! handling was left broken is dropped, and a new one is opened in its place, so the pool
//! recovers from a database restart without a process restart. The check is what diesel-async's
//! `RecyclingMethod::Fast` does (`is_broken`: the transaction manager's state and the client's
//! `is_closed`); a `SELECT 1` per checkout (`Verified`) would add a round trip to every request
//! and only catch, in addition, a peer that vanished without closing its socket, which the first
//! real query reports as an error anyway.

use crate::settings::DatabaseSettings;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool,
};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
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
    config.recycling_method = RecyclingMethod::Fast;
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

/// Whether `conn` is inside a transaction (where a failed statement aborts it, and a nested
/// `transaction` is a savepoint: two more round trips).
pub fn in_transaction(conn: &mut AsyncPgConnection) -> bool {
    !matches!(
        <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(conn)
            .transaction_depth(),
        Ok(None)
    )
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
