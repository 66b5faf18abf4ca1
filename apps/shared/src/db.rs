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
    pool_with(settings, settings.pool_size, config)
}

/// Connections in the pool of statements batched across requests ([`build_batch_pool`]), for each
/// batch that `database.batch_concurrency` lets run at once: room for the five kinds of batch
/// (driver sessions by token, drivers with vehicles, quote inserts, cover starts, cover ends), so
/// that one kind never waits for another's connection, and one more.
pub const BATCH_POOL_PER_SLOT: usize = 6;

/// The pool of the statements batched across requests ([`crate::batch`]), apart from the
/// requests' own so neither waits for the other: at most `batch_concurrency` ×
/// [`BATCH_POOL_PER_SLOT`] connections, opened on first use, each with
/// `plan_cache_mode = force_generic_plan`. A batched statement takes arrays of keys; left to
/// choose, PostgreSQL plans it afresh for every array it is given (a custom plan each time, which
/// costs more than running it), where the generic plan is one index lookup per key.
pub fn build_batch_pool(settings: &DatabaseSettings) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(|url| {
        Box::pin(async move {
            use diesel_async::{AsyncConnection, SimpleAsyncConnection};
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.batch_execute("SET plan_cache_mode = force_generic_plan")
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    pool_with(
        settings,
        settings.batch_concurrency.max(1) * BATCH_POOL_PER_SLOT,
        config,
    )
}

fn pool_with(
    settings: &DatabaseSettings,
    size: usize,
    config: ManagerConfig<AsyncPgConnection>,
) -> anyhow::Result<DbPool> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose(),
        config,
    );
    let timeout = Duration::from_millis(settings.acquire_timeout_ms);
    let pool = deadpool::Pool::builder(manager)
        .max_size(size)
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

/// Whether an error says the database (or Redis) could not be reached or went away mid-request —
/// a restart, a failover, a full pool — rather than that the request or our code is wrong. Such
/// an error is worth retrying as it was (with the same idempotency key): callers answer it as
/// `SERVICE_UNAVAILABLE`, not as an internal error.
///
/// Errors reach the API through several crates' wrappers, some of them only as text, so this
/// reads the whole chain's text for the phrases the PostgreSQL client, the pool and the Redis
/// client use.
pub fn is_outage(err: &anyhow::Error) -> bool {
    const PHRASES: &[&str] = &[
        "connection closed",
        "error connecting to server",
        "not yet accepting connections",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "terminating connection due to administrator command",
        "Timeout occurred while creating a new object",
        "Timeout occurred while recycling an object",
        "Timeout occurred while waiting for a slot",
        "Connection refused",
        "broken pipe",
        "Connection reset by peer",
    ];
    let text = format!("{err:#}");
    PHRASES.iter().any(|p| text.contains(p))
}

#[cfg(test)]
mod outage_tests {
    use super::is_outage;

    #[test]
    fn outages_are_told_from_bugs() {
        for outage in [
            "ledger: database error: database error: connection closed",
            "database pool: Error occurred while creating a new object: error connecting to server: error connecting to server",
            "the database system is not yet accepting connections",
            "FATAL: terminating connection due to administrator command",
            "Connection refused (os error 111)",
        ] {
            assert!(is_outage(&anyhow::anyhow!(outage.to_owned())), "{outage}");
        }
        let wrapped = anyhow::anyhow!("connection closed").context("charging session cvs_1");
        assert!(is_outage(&wrapped));
        for bug in [
            // A wrong database name or password is a deployment's mistake, not an outage.
            "database pool: Error occurred while creating a new object: FATAL: database \"sc_x\" does not exist",
            "duplicate key value violates unique constraint \"quotes_pkey\"",
            "column \"x\" does not exist",
            "driver drv_1 has a card but no customer",
        ] {
            assert!(!is_outage(&anyhow::anyhow!(bug.to_owned())), "{bug}");
        }
    }
}
