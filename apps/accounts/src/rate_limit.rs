//! Fixed-window rate limits in Redis.
//!
//! Invariants: counting and the window's expiry happen in one Lua script, so concurrent callers on
//! any number of servers share one count and a key can never be left without an expiry (which
//! would block its subject for good); keys live under
//! `shared::redis_conn::key(prefix, ["rl", bucket, subject])`.
//!
//! A fixed window lets a subject make up to twice the limit across a window boundary; for
//! brute-force and SMS-cost protection that bound is what matters, and it costs one round trip.
//!
//! What to do when Redis is down is the caller's choice ([`RateLimitError::Redis`]): the API
//! should refuse code sending (fail closed: texts cost money and can be abused) and may let
//! authenticated partner calls through (fail open).

use redis::aio::ConnectionManager;
use std::sync::LazyLock;
use std::time::Duration;

/// A named limit: at most `limit` calls per `window` for each subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The bucket name in the key, e.g. `login_code_phone`.
    pub bucket: &'static str,
    /// Calls allowed per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

/// Login codes sent to one phone: stops SMS bombing of a number and code-cycling.
pub const LOGIN_CODE_PER_PHONE: Policy = Policy {
    bucket: "login_code_phone",
    limit: 5,
    window: Duration::from_secs(15 * 60),
};

/// Login codes requested from one client address: stops SMS pumping across many numbers.
pub const LOGIN_CODE_PER_CLIENT: Policy = Policy {
    bucket: "login_code_client",
    limit: 20,
    window: Duration::from_secs(15 * 60),
};

/// Code verifications for one phone, across its codes: bounds guessing even when new codes are
/// requested between tries.
pub const VERIFY_PER_PHONE: Policy = Policy {
    bucket: "verify_phone",
    limit: 10,
    window: Duration::from_secs(15 * 60),
};

/// Failed code verifications from one client address, over every phone: bounds one client
/// guessing the codes of many numbers. Counted when an attempt starts and given back when it
/// signs in ([`give_back_policy`]), so only failures use it up.
pub const VERIFY_FAILURES_PER_CLIENT: Policy = Policy {
    bucket: "verify_failures_client",
    limit: 30,
    window: Duration::from_secs(15 * 60),
};

/// Failed code verifications over the whole deployment: a breaker for guessing spread over many
/// addresses and numbers (each six-digit guess is one in a million; this caps the guesses an
/// attacker gets, whatever the spread). Counted like [`VERIFY_FAILURES_PER_CLIENT`].
pub const VERIFY_FAILURES_GLOBAL: Policy = Policy {
    bucket: "verify_failures_global",
    limit: 1_000,
    window: Duration::from_secs(5 * 60),
};

/// The subject of the deployment-wide budgets.
pub const GLOBAL_SUBJECT: &str = "all";

/// Failed staff sign-ins for one email (password guessing). Each attempt is counted when it
/// starts (so concurrent guesses cannot slip past the limit together) and given back when it
/// succeeds ([`give_back_policy`]): only failures use up the allowance.
pub const STAFF_SIGN_IN_PER_EMAIL: Policy = Policy {
    bucket: "staff_sign_in_email",
    limit: 10,
    window: Duration::from_secs(15 * 60),
};

/// Partner API calls per key, per minute (the limit comes from settings).
pub fn partner_api_per_key(limit: u32) -> Policy {
    Policy {
        bucket: "partner_api_key",
        limit,
        window: Duration::from_secs(60),
    }
}

/// Partner API calls per partner over all its keys, per minute (the limit comes from settings):
/// a partner cannot multiply its allowance by making more keys.
pub fn partner_api_per_partner(limit: u32) -> Policy {
    Policy {
        bucket: "partner_api_partner",
        limit,
        window: Duration::from_secs(60),
    }
}

/// The subject has used its allowance for this window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited; retry after {retry_after_secs}s")]
pub struct RateLimited {
    /// Seconds until the window resets (at least 1).
    pub retry_after_secs: u64,
}

impl RateLimited {
    /// `RATE_LIMITED`, for the API's `userErrors` / `extensions.code`.
    pub fn user_error(&self) -> shared::FieldError {
        shared::FieldError::general(
            "RATE_LIMITED",
            format!(
                "Too many attempts. Try again in {} seconds.",
                self.retry_after_secs
            ),
        )
    }
}

/// Why a rate limit check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Over the limit.
    #[error(transparent)]
    Limited(#[from] RateLimited),
    /// Redis failed; the caller decides whether to fail open or closed.
    #[error("rate limit store unavailable")]
    Redis(#[from] redis::RedisError),
}

/// Increments the window's count, starts the window (with its expiry) on the first call, and
/// repairs a key that somehow lost its expiry. Returns `{count, milliseconds left}`.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
",
    )
});

/// Counts one call of `subject` in `bucket` and fails when it is past `limit` calls in `window`.
/// Calls over the limit still count, so hammering does not shorten the wait.
pub async fn check(
    redis: &mut ConnectionManager,
    key_prefix: &str,
    bucket: &str,
    subject: &str,
    limit: u32,
    window: Duration,
) -> Result<(), RateLimitError> {
    let key = shared::redis_conn::key(key_prefix, ["rl", bucket, subject]);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let (count, ttl_ms): (u64, i64) = SCRIPT.key(&key).arg(window_ms).invoke_async(redis).await?;
    if count > u64::from(limit) {
        let ttl_ms = u64::try_from(ttl_ms).unwrap_or(window_ms);
        return Err(RateLimited {
            retry_after_secs: ttl_ms.div_ceil(1000).max(1),
        }
        .into());
    }
    Ok(())
}

/// Takes back one call of `subject` in `bucket` that [`check`] counted, within the same window
/// (never below zero, and never starting a window). The window's expiry is untouched.
static GIVE_BACK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
",
    )
});

/// Gives back one call counted by [`check`], for a limit that counts only failures: the caller
/// counts every attempt as it starts and gives back those that succeed.
pub async fn give_back(
    redis: &mut ConnectionManager,
    key_prefix: &str,
    bucket: &str,
    subject: &str,
) -> Result<(), redis::RedisError> {
    let key = shared::redis_conn::key(key_prefix, ["rl", bucket, subject]);
    let _left: i64 = GIVE_BACK.key(&key).invoke_async(redis).await?;
    Ok(())
}

/// [`give_back`] with a named policy.
pub async fn give_back_policy(
    redis: &mut ConnectionManager,
    key_prefix: &str,
    policy: &Policy,
    subject: &str,
) -> Result<(), redis::RedisError> {
    give_back(redis, key_prefix, policy.bucket, subject).await
}

/// [`check`] with a named policy.
pub async fn check_policy(
    redis: &mut ConnectionManager,
    key_prefix: &str,
    policy: &Policy,
    subject: &str,
) -> Result<(), RateLimitError> {
    check(
        redis,
        key_prefix,
        policy.bucket,
        subject,
        policy.limit,
        policy.window,
    )
    .await
}
