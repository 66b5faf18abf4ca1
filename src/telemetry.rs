//! Logs (`tracing`, JSON or pretty) and Sentry. Sentry is off without a DSN; with one, errors
//! reported through `graphql::errors::internal` and dead-lettered jobs go out with their request
//! or job id, and log lines become breadcrumbs.
//!
//! What leaves for Sentry is scrubbed first ([`scrub_event`]): never a request body (login
//! codes, passwords, card set-ups), cookies, credentials, signatures, query strings or client
//! addresses; of a request only its method, path and a few plain headers.

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
    // The actix integration reads JSON bodies into events unless told not to (no body size,
    // no PII); `scrub_event` drops whatever else a request carries.
    let options = sentry::ClientOptions::new()
        .release(release)
        .environment(format!("{:?}", settings.environment).to_lowercase())
        .send_default_pii(false)
        .max_request_body_size(sentry::MaxRequestBodySize::None)
        .before_send(|event| Some(scrub_event(event)));
    let guard = sentry::init((settings.sentry.dsn.expose(), options));
    Some(guard)
}

/// Request headers an event may keep; every other one (credentials, cookies, signatures,
/// forwarding addresses, anything a client invents) is dropped.
const KEPT_HEADERS: [&str; 6] = [
    "accept",
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-request-id",
];

/// The event as it may leave for Sentry: the request's body, cookies, query string, client
/// address and every header not in [`KEPT_HEADERS`] removed, and the user's address too.
pub fn scrub_event(
    mut event: sentry::protocol::Event<'static>,
) -> sentry::protocol::Event<'static> {
    if let Some(request) = event.request.as_mut() {
        request.data = None;
        request.cookies = None;
        request.query_string = None;
        request.env.clear();
        request
            .headers
            .retain(|name, _| KEPT_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        if let Some(url) = request.url.as_mut() {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
    }
    if let Some(user) = event.user.as_mut() {
        user.ip_address = None;
    }
    event
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sentry::protocol::{Event, Request};

    #[test]
    fn events_keep_no_body_cookie_credential_or_query() {
        let mut request = Request {
            url: "https://api.example/graphql?token=tok-secret#frag"
                .parse()
                .ok(),
            method: Some("POST".into()),
            data: Some(r#"{"query":"mutation{verifyLoginCode(code:\"123456\")}"}"#.into()),
            query_string: Some("token=tok-secret".into()),
            cookies: Some("__Host-sc_staff=cookie-secret".into()),
            ..Request::default()
        };
        for (name, value) in [
            ("Authorization", "Bearer bearer-secret"),
            ("Cookie", "__Host-sc_staff=cookie-secret"),
            ("Stripe-Signature", "t=1,v1=sig-secret"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Api-Key", "key-secret"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "req-1"),
        ] {
            request.headers.insert(name.into(), value.into());
        }
        request
            .env
            .insert("REMOTE_ADDR".into(), "203.0.113.7".into());
        let event = Event {
            request: Some(request),
            user: Some(sentry::User {
                id: Some("drv_1".into()),
                ip_address: Some(sentry::protocol::IpAddress::Auto),
                ..Default::default()
            }),
            ..Event::default()
        };
        let scrubbed = scrub_event(event);
        let text = serde_json::to_string(&scrubbed).unwrap();
        for secret in [
            "123456",
            "tok-secret",
            "cookie-secret",
            "bearer-secret",
            "sig-secret",
            "key-secret",
            "203.0.113.7",
            "frag",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let request = scrubbed.request.unwrap();
        assert_eq!(request.method.as_deref(), Some("POST"));
        assert_eq!(request.url.unwrap().as_str(), "https://api.example/graphql");
        assert_eq!(
            request.headers.get("X-Request-Id").map(String::as_str),
            Some("req-1")
        );
        assert_eq!(scrubbed.user.unwrap().id.as_deref(), Some("drv_1"));
    }
}
