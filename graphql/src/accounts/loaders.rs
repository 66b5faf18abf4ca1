//! DataLoaders for the accounts edges: drivers and vehicles by id, and a driver's vehicles, each
//! batched into one query per request tick (no N+1 under `nodes` or lists).
//!
//! Loaders only load; whether the viewer may see what was loaded is checked by the resolver that
//! asked (see [`crate::guard`]). One loader is made per request, so nothing is cached across
//! requests or viewers.

use accounts::{DriverId, VehicleId};
use async_graphql::dataloader::{DataLoader, Loader};
use shared::DbPool;
use std::collections::HashMap;
use std::sync::Arc;

/// A loader failure, shareable between the resolvers that waited on the same batch.
pub type LoadError = Arc<anyhow::Error>;

/// The key of a driver's (not removed) vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VehiclesOf(pub DriverId);

/// Loads accounts rows in batches.
pub struct AccountsLoader {
    pool: DbPool,
}

impl AccountsLoader {
    /// A per-request loader over `pool`.
    pub fn data_loader(pool: DbPool) -> DataLoader<AccountsLoader> {
        DataLoader::new(AccountsLoader { pool }, tokio::spawn)
    }

    async fn conn(&self) -> Result<shared::DbConn, LoadError> {
        self.pool
            .get()
            .await
            .map_err(|e| Arc::new(anyhow::anyhow!("database pool: {e}")))
    }
}

fn load_error(e: accounts::AccountsError) -> LoadError {
    Arc::new(anyhow::Error::new(e))
}

impl Loader<DriverId> for AccountsLoader {
    type Value = accounts::Driver;
    type Error = LoadError;

    async fn load(&self, keys: &[DriverId]) -> Result<HashMap<DriverId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let drivers = accounts::get_drivers(&mut conn, keys)
            .await
            .map_err(load_error)?;
        Ok(drivers.into_iter().map(|d| (d.id, d)).collect())
    }
}

impl Loader<VehicleId> for AccountsLoader {
    type Value = accounts::Vehicle;
    type Error = LoadError;

    async fn load(&self, keys: &[VehicleId]) -> Result<HashMap<VehicleId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let vehicles = accounts::get_vehicles(&mut conn, keys)
            .await
            .map_err(load_error)?;
        Ok(vehicles.into_iter().map(|v| (v.id, v)).collect())
    }
}

impl Loader<VehiclesOf> for AccountsLoader {
    type Value = Vec<accounts::Vehicle>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[VehiclesOf],
    ) -> Result<HashMap<VehiclesOf, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let ids: Vec<DriverId> = keys.iter().map(|k| k.0).collect();
        let by_driver = accounts::list_vehicles_of_drivers(&mut conn, &ids)
            .await
            .map_err(load_error)?;
        Ok(by_driver
            .into_iter()
            .map(|(driver, vehicles)| (VehiclesOf(driver), vehicles))
            .collect())
    }
}
