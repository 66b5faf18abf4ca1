//! Logs (`tracing`, JSON or pretty) and Sentry. Sentry is off without a DSN; with one, errors
//! reported through `graphql::errors::internal` and dead-lettered jobs go out with their request
//! or job id, and log lines become breadcrumbs.

use shared::settings::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps Sentry alive; flushes pending events when dropped.
pub struct Telemetry {
    _sentry: Option<sentry::ClientInitGuard>,
}

/// Installs the log subscriber and, with a DSN, the Sentry client.
pub fn init(settings: &Settings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Log lines become breadcrumbs; events are sent only where errors are reported explicitly,
    // so one failure is one Sentry event.
    let sentry_layer = sentry::integrations::tracing::BreadcrumbLayer::new().with_filter(
        tracing_subscriber::filter::filter_fn(|md| *md.level() <= tracing::Level::INFO),
    );
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(sentry_layer);
    let _ = match settings.log.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    Telemetry {
        _sentry: init_sentry(settings),
    }
}

/// Starts the Sentry client when a DSN is configured.
pub fn init_sentry(settings: &Settings) -> Option<sentry::ClientInitGuard> {
    if settings.sentry.dsn.is_empty() {
        return None;
    }
    let release = settings
        .sentry
        .release
        .clone()
        .unwrap_or_else(|| format!("shiftcover@{}", env!("CARGO_PKG_VERSION")));
    let guard = sentry::init((
        settings.sentry.dsn.expose(),
        sentry::ClientOptions::new()
            .release(release)
            .environment(format!("{:?}", settings.environment).to_lowercase()),
    ));
    Some(guard)
}
