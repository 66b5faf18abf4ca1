//! `shiftcover generate-ledger` and `shiftcover finance-bench`: synthetic books and the timings
//! of the finance reports on them.

use shared::core::Core;

/// Generates about `rows` ledger postings over `days` days and a busy day of `stripe_day`
/// Stripe transactions, printing progress.
pub async fn generate(core: &Core, rows: i64, days: i64, stripe_day: i64) -> anyhow::Result<()> {
    let mut conn = core.pool.get().await?;
    let started = std::time::Instant::now();
    let done = finance::generate::generate_ledger(
        &mut conn,
        finance::generate::GenerateOptions {
            rows,
            days,
            stripe_day,
        },
        |n, total| {
            println!(
                "{n}/{total} transactions ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "generated {} transactions, {} postings, {} wallets, {} Stripe transactions in {:.1} s",
        done.transactions, done.postings, done.drivers, done.stripe_rows, done.seconds
    );
    Ok(())
}

/// Prints each finance measurement.
pub async fn bench(core: &Core) -> anyhow::Result<()> {
    let mut conn = core.pool.get().await?;
    let measures = finance::bench::run(&mut conn, &*core.clock)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for m in measures {
        println!("{:<72} {:>10.1} ms   {}", m.name, m.ms, m.note);
    }
    Ok(())
}
