//! Command-line interface.

use clap::{Parser, Subcommand};
use shared::clock::SystemClock;
use shared::core::Core;
use shared::settings::Settings;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// ShiftCover: on-demand hourly motor insurance for gig-economy drivers.
#[derive(Debug, Parser)]
#[command(name = "shiftcover", version, about)]
pub struct Cli {
    /// A TOML settings file; `SHIFTCOVER__…` environment variables override it.
    #[arg(long, short, global = true, env = "SHIFTCOVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Serve the GraphQL API, webhooks, admin UI, health and metrics over HTTP.
    Serve,
    /// Run the background workers: the outbox relay and every job queue.
    Work,
    /// Load demo data (idempotent).
    Seed,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Manage back-office (ops, finance, admin) users.
    Staff {
        /// What to do.
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Replay a partner platform's realistic day of shifts for N drivers against a running
    /// server: makes the drivers (in the configured database; not in production), links them
    /// with the partner's key, sends their events in batches (slightly out of order, a few
    /// twice) and prints the answers and the throughput.
    SimulatePartner {
        /// The running server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The partner's API key, with the `drivers:link` and `shifts:write` scopes (a test key
        /// starts no real cover).
        #[arg(long, env = "SHIFTCOVER_PARTNER_API_KEY", hide_env_values = true)]
        api_key: String,
        /// How many drivers.
        #[arg(long, default_value_t = 20)]
        drivers: usize,
        /// How many hours back the day starts (1 to 23).
        #[arg(long, default_value_t = 10)]
        hours: i64,
        /// Events per `recordShiftEvents` call (1 to 500).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seed of the random day (the same seed makes the same drivers and the same day).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Generate synthetic ledger data for benchmarks (a benchmark database only: it needs a
    /// superuser and skips the ledger's per-row triggers; every transaction balances by
    /// construction and is checked at the end).
    GenerateLedger {
        /// Ledger postings to write (about; 3.6 postings per transaction).
        #[arg(long)]
        rows: i64,
        /// Days of history, ending at the start of today (UTC).
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Extra top-ups yesterday, each with its imported Stripe balance transaction.
        #[arg(long, default_value_t = 100_000)]
        stripe_day: i64,
    },
    /// Time the finance reports on the configured database beside plain SUM … GROUP BY queries.
    FinanceBench,
    /// Check the books.
    Ledger {
        /// What to do.
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

/// The `ledger` subcommands.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check the whole ledger: every transaction balances (its postings sum to zero, in one
    /// currency), no posting is orphaned, no original is over-reversed, each currency sums to zero;
    /// every wallet's balance equals the entries it lists; every succeeded top-up and refund is
    /// booked exactly once. Prints a report per database and exits 1 when any check fails.
    /// Reads every posting: run it off-peak or against a replica.
    Check {
        /// Check this database instead of the configured one; repeat to check several (the test
        /// suite checks every database it made).
        #[arg(long = "database-url")]
        database_urls: Vec<String>,
        /// Also list what is unfinished (not an error): ended sessions not charged within an
        /// hour, refunds pending for an hour, top-ups waiting past Stripe's idempotency window;
        /// the payments limbo sweep settles them.
        #[arg(long)]
        unfinished: bool,
    },
}

/// The `staff` subcommands.
#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create a staff user. The password is read from stdin (`--password-stdin`), else from
    /// `SHIFTCOVER_STAFF_PASSWORD`, else asked for at the terminal; never from an argument,
    /// which other users of the machine could see.
    Create {
        /// Sign-in email.
        #[arg(long)]
        email: String,
        /// Role.
        #[arg(long, value_parser = ["ops", "finance", "admin"])]
        role: String,
        /// Name shown in the back office and the audit log; defaults to the email's local part.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// The environment variable `staff create` reads a password from.
pub const STAFF_PASSWORD_ENV: &str = "SHIFTCOVER_STAFF_PASSWORD";

/// Parses arguments, loads settings and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shiftcover: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _telemetry = crate::telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shiftcover: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "command failed");
            eprintln!("shiftcover: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let core = Core::new(settings, Arc::new(SystemClock))?;
    match command {
        Command::Migrate => {
            let applied = shared::db::run_migrations(core.settings.database.url.expose()).await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
            Ok(())
        }
        Command::Serve => {
            let server = graphql::start_server(core)?;
            let handle = server.handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                handle.stop(true).await;
            });
            server.task.await??;
            Ok(())
        }
        Command::Work => workers::run(core, workers::default_registry(), shutdown_signal()).await,
        Command::Seed => crate::seed::run(&core).await,
        Command::Schema => Ok(()),
        Command::Staff {
            command:
                StaffCommand::Create {
                    email,
                    role,
                    name,
                    password_stdin,
                },
        } => create_staff(&core, email, &role, name, password_stdin).await,
        Command::Ledger {
            command:
                LedgerCommand::Check {
                    database_urls,
                    unfinished,
                },
        } => check_ledger(&core, database_urls, unfinished).await,
        Command::SimulatePartner {
            url,
            api_key,
            drivers,
            hours,
            batch,
            seed,
        } => {
            crate::simulate::run(
                &core,
                crate::simulate::SimulateOptions {
                    url,
                    api_key,
                    drivers,
                    hours,
                    batch,
                    seed,
                },
            )
            .await
        }
        Command::GenerateLedger {
            rows,
            days,
            stripe_day,
        } => crate::finance_tools::generate(&core, rows, days, stripe_day).await,
        Command::FinanceBench => crate::finance_tools::bench(&core).await,
    }
}

/// Runs the ledger and wallet checks over each database; fails when any is not clean.
async fn check_ledger(
    core: &Core,
    database_urls: Vec<String>,
    unfinished: bool,
) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let mut failed = Vec::new();
    if database_urls.is_empty() {
        let mut conn = core.pool.get().await?;
        if !check_one(&mut conn, "the configured database", unfinished).await? {
            failed.push("the configured database".to_owned());
        }
    }
    for url in &database_urls {
        // Name databases by their last path segment, never by the URL (it may hold a password).
        let name = url.rsplit('/').next().unwrap_or("?").to_owned();
        let mut conn = AsyncPgConnection::establish(url)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {name}: {e}"))?;
        if !check_one(&mut conn, &name, unfinished).await? {
            failed.push(name);
        }
    }
    let checked = database_urls.len().max(1);
    if failed.is_empty() {
        println!("ledger check: {checked} database(s) clean");
        Ok(())
    } else {
        anyhow::bail!(
            "ledger check failed in {} of {checked} database(s): {}",
            failed.len(),
            failed.join(", ")
        )
    }
}

/// Checks one database and prints what is wrong; true when clean.
async fn check_one(
    conn: &mut diesel_async::AsyncPgConnection,
    name: &str,
    unfinished: bool,
) -> anyhow::Result<bool> {
    if unfinished {
        for item in payments::unresolved(conn, chrono::Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!("{name}: unfinished payments: {e}"))?
        {
            println!("{name}: unfinished: {item}");
        }
    }
    let ledger = ledger::check_integrity(conn)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: ledger check: {e}"))?;
    let wallets = payments::check_wallets(conn)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: wallet check: {e}"))?;
    if ledger.is_clean() && wallets.is_clean() {
        return Ok(true);
    }
    println!(
        "{name}: {} transactions, {} postings, {} wallets, {} top-ups, {} refunds checked",
        ledger.transactions_checked,
        ledger.postings_checked,
        wallets.wallets_checked,
        wallets.top_ups_checked,
        wallets.refunds_checked
    );
    for t in &ledger.unbalanced {
        println!(
            "{name}: transaction {} ({}) does not balance: {} postings summing to {}, {} in a foreign currency, {} with a mismatched time",
            t.id,
            t.currency,
            t.postings,
            t.sum_minor,
            t.foreign_currency_postings,
            t.mismatched_times
        );
    }
    if ledger.orphan_postings > 0 {
        println!(
            "{name}: {} postings without a transaction",
            ledger.orphan_postings
        );
    }
    for id in &ledger.over_reversed {
        println!("{name}: transaction {id} is reversed by more than it posted");
    }
    for (currency, total) in &ledger.nonzero_currency_totals {
        println!("{name}: {currency} postings sum to {total}, not zero");
    }
    for problem in &wallets.problems {
        println!("{name}: {problem}");
    }
    Ok(false)
}

async fn create_staff(
    core: &Core,
    email: String,
    role: &str,
    name: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let role: accounts::Role = role.parse().map_err(|e| user_facing(&e))?;
    let password = read_password(password_stdin)?;
    let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
    let mut conn = core.pool.get().await?;
    let staff = accounts::create_staff(
        &mut conn,
        core.clock.as_ref(),
        accounts::Actor::System,
        accounts::NewStaff {
            email,
            name,
            role,
            password,
        },
    )
    .await
    .map_err(|e| user_facing(&e))?;
    println!(
        "created staff user {} <{}> with role {}",
        staff.id, staff.email, staff.role
    );
    Ok(())
}

/// An accounts error as a one-line message (its code and field when the user can fix it).
fn user_facing(e: &accounts::AccountsError) -> anyhow::Error {
    match e.user_error() {
        Some(u) => anyhow::anyhow!("{u}"),
        None => anyhow::anyhow!("{e:#}"),
    }
}

/// The new user's password: stdin, the environment, or the terminal (without echo).
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let strip = |mut line: String| {
        while line.ends_with('\n') || line.ends_with('\r') {
            line.pop();
        }
        line
    };
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(strip(line));
    }
    if let Ok(password) = std::env::var(STAFF_PASSWORD_ENV) {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no password given: use --password-stdin or set {STAFF_PASSWORD_ENV}");
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let echo_off = set_terminal_echo(false);
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if echo_off {
            set_terminal_echo(true);
            eprintln!();
        }
        read?;
        Ok(strip(line))
    };
    let password = ask("Password: ")?;
    if ask("Password again: ")? != password {
        anyhow::bail!("the passwords do not match");
    }
    Ok(password)
}

/// Turns the terminal's echo off or on with `stty`; false when that was not possible.
fn set_terminal_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
