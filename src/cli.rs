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
}

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
    }
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
