//! The handles a process shares between requests and jobs.

use crate::clock::SharedClock;
use crate::db::DbPool;
use crate::settings::Settings;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A Redis connection opened on first use and re-established by itself after outages, so a
/// process can start (and report "not ready") while Redis is down.
#[derive(Clone)]
pub struct RedisHandle {
    settings: crate::settings::RedisSettings,
    manager: Arc<OnceCell<ConnectionManager>>,
}

impl RedisHandle {
    /// A handle; no connection is made yet.
    pub fn new(settings: crate::settings::RedisSettings) -> Self {
        Self {
            settings,
            manager: Arc::new(OnceCell::new()),
        }
    }

    /// A connection (cheap to clone), opening it on first use.
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        self.manager
            .get_or_try_init(|| crate::redis_conn::connect(&self.settings))
            .await
            .cloned()
    }

    /// The deployment's key prefix.
    pub fn prefix(&self) -> &str {
        &self.settings.key_prefix
    }
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle")
            .field("prefix", &self.settings.key_prefix)
            .finish()
    }
}

/// Settings, database, Redis and clock: what every request and job handler is given.
#[derive(Clone)]
pub struct Core {
    /// Process settings.
    pub settings: Arc<Settings>,
    /// The database.
    pub pool: DbPool,
    /// Redis.
    pub redis: RedisHandle,
    /// "Now".
    pub clock: SharedClock,
    /// Statements batched across concurrent requests ([`crate::batch`]).
    pub batchers: crate::batch::Batchers,
    /// The batchers' own connections ([`crate::db::build_batch_pool`]).
    pub batch_pool: DbPool,
}

impl Core {
    /// Builds the shared handles from settings; connects to nothing yet.
    pub fn new(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let pool = crate::db::build_pool(&settings.database)?;
        let batch_pool = crate::db::build_batch_pool(&settings.database)?;
        let redis = RedisHandle::new(settings.redis.clone());
        Ok(Self {
            settings: Arc::new(settings),
            pool,
            redis,
            clock,
            batchers: crate::batch::Batchers::default(),
            batch_pool,
        })
    }

    /// The process's batcher of `Q` ([`crate::batch`]), on the batchers' pool.
    pub fn batcher<Q: crate::batch::BatchQuery>(&self) -> Arc<crate::batch::Batcher<Q>> {
        self.batchers.get::<Q>(
            &self.batch_pool,
            self.settings.database.batch_concurrency,
            crate::batch::DEFAULT_MAX_BATCH,
        )
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("settings", &self.settings)
            .finish()
    }
}
