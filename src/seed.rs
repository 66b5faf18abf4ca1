//! `shiftcover seed`: demo data for a development machine. Idempotent: running it twice leaves
//! the same data as running it once.

use shared::core::Core;

/// Loads the demo data.
pub async fn run(core: &Core) -> anyhow::Result<()> {
    let mut conn = core.pool.get().await?;
    // The demo job proves the job path is alive on a fresh machine.
    shared::outbox::enqueue(
        &mut conn,
        &shared::demo::DemoPing {
            message: "ShiftCover demo data loaded".into(),
            key: "seed:demo-ping".into(),
        },
    )
    .await?;
    tracing::info!("demo data loaded");
    Ok(())
}
