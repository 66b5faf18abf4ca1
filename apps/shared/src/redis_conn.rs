//! Redis connections and key naming. Every key starts with the configured prefix, so that several
//! deployments (or test runs) can share one Redis without seeing each other's keys.

use crate::settings::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Opens a self-reconnecting Redis connection.
pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(settings.url.expose())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, config).await
}

/// Builds a key under the deployment's prefix: `key(prefix, ["rl", "phone", "+44…"])`.
pub fn key<I, S>(prefix: &str, parts: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::from(prefix);
    for part in parts {
        out.push(':');
        out.push_str(part.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_prefixed_and_colon_separated() {
        assert_eq!(super::key("sc", ["rl", "phone"]), "sc:rl:phone");
    }
}
