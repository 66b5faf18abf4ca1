//! DataLoaders for the cover edges: sessions by id (`node`/`nodes`), a session's charges by UK
//! day and the session it continues, product versions and products by id (a session's
//! `productVersion`), each batched into one query per request tick.
//!
//! Loaders only load; whether the viewer may see what was loaded is checked by the resolver that
//! asked. One loader is made per request (per subscription connection), so nothing is cached
//! across requests or viewers.

use crate::accounts::loaders::LoadError;
use async_graphql::dataloader::{DataLoader, Loader};
use cover::CoverSessionId;
use pricing::{ProductId, ProductVersionId};
use shared::DbPool;
use std::collections::HashMap;
use std::sync::Arc;

/// Loads cover and pricing rows in batches.
pub struct CoverLoader {
    pool: DbPool,
}

impl CoverLoader {
    /// A per-request loader over `pool`.
    pub fn data_loader(pool: DbPool) -> DataLoader<CoverLoader> {
        DataLoader::new(CoverLoader { pool }, tokio::spawn)
    }

    async fn conn(&self) -> Result<shared::DbConn, LoadError> {
        self.pool
            .get()
            .await
            .map_err(|e| Arc::new(anyhow::anyhow!("database pool: {e}")))
    }
}

fn load_error(e: impl Into<anyhow::Error>) -> LoadError {
    Arc::new(e.into())
}

impl Loader<CoverSessionId> for CoverLoader {
    type Value = cover::CoverSession;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CoverSessionId],
    ) -> Result<HashMap<CoverSessionId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let sessions = cover::get_sessions(&mut conn, keys)
            .await
            .map_err(load_error)?;
        Ok(sessions.into_iter().map(|s| (s.id, s)).collect())
    }
}

/// Key: the charges of a session by UK day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DaysOf(pub CoverSessionId);

impl Loader<DaysOf> for CoverLoader {
    type Value = Vec<pricing::DayCharge>;
    type Error = LoadError;

    async fn load(&self, keys: &[DaysOf]) -> Result<HashMap<DaysOf, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let ids: Vec<CoverSessionId> = keys.iter().map(|k| k.0).collect();
        let days = cover::session_days(&mut conn, &ids)
            .await
            .map_err(load_error)?;
        Ok(days.into_iter().map(|(id, d)| (DaysOf(id), d)).collect())
    }
}

/// Key: the session whose working period a session continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContinuationOf(pub CoverSessionId);

impl Loader<ContinuationOf> for CoverLoader {
    type Value = CoverSessionId;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ContinuationOf],
    ) -> Result<HashMap<ContinuationOf, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let ids: Vec<CoverSessionId> = keys.iter().map(|k| k.0).collect();
        let continued = cover::continuations(&mut conn, &ids)
            .await
            .map_err(load_error)?;
        Ok(continued
            .into_iter()
            .map(|(id, (previous, _))| (ContinuationOf(id), previous))
            .collect())
    }
}

impl Loader<ProductVersionId> for CoverLoader {
    type Value = pricing::ProductVersion;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProductVersionId],
    ) -> Result<HashMap<ProductVersionId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let versions = pricing::get_versions(&mut conn, keys)
            .await
            .map_err(load_error)?;
        Ok(versions.into_iter().map(|v| (v.id, v)).collect())
    }
}

impl Loader<ProductId> for CoverLoader {
    type Value = pricing::Product;
    type Error = LoadError;

    async fn load(&self, keys: &[ProductId]) -> Result<HashMap<ProductId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let mut out = HashMap::with_capacity(keys.len());
        // Products are few (a catalogue); one read per distinct product of the batch.
        for id in keys {
            match pricing::get_product(&mut conn, *id).await {
                Ok(p) => {
                    out.insert(*id, p);
                }
                Err(pricing::PricingError::ProductNotFound) => {}
                Err(e) => return Err(load_error(e)),
            }
        }
        Ok(out)
    }
}
