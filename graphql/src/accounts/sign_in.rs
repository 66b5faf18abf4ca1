//! Sign-in and sign-out: drivers by SMS code, staff by email and password (into a cookie).
//!
//! Rate limits, checked before any work:
//! - `requestLoginCode`: per client address and per phone; fails closed when Redis is down
//!   (texts cost money and can be abused);
//! - `verifyLoginCode`: per phone, across its codes; fails open (each code also allows only a few
//!   tries, counted in PostgreSQL);
//! - `staffSignIn`: failures per email (each attempt is counted as it starts and given back
//!   when it succeeds, so staff who sign in often are never locked out by their own successes);
//!   fails open (argon2 already makes each guess slow).
//!
//! Over a limit, the payload carries a `RATE_LIMITED` user error and `retryAfterSeconds`.

use super::{Driver, StaffUser, conn, core, retry_after, user_errors};
use crate::context::ClientAddr;
use crate::errors::{UserError, internal};
use crate::guard;
use crate::viewer::{clear_staff_session_cookie, staff_session_cookie};
use accounts::rate_limit::{self, Policy, RateLimitError, RateLimited};
use accounts::{DriverPrincipal, LoginCodeSettings, Phone, Principal};
use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use shared::core::Core;

/// What to do when Redis cannot be asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenRedisDown {
    Refuse,
    Allow,
}

/// Counts one call of `subject` against `policy`; `Some` when over the limit.
async fn over_limit(
    ctx: &Context<'_>,
    core: &Core,
    policy: &Policy,
    subject: &str,
    when_down: WhenRedisDown,
) -> async_graphql::Result<Option<RateLimited>> {
    let down = |e: redis::RedisError| match when_down {
        WhenRedisDown::Refuse => Err(internal(ctx, anyhow::Error::new(e))),
        WhenRedisDown::Allow => {
            tracing::warn!(bucket = policy.bucket, error = %e, "rate limit skipped: Redis unavailable");
            Ok(None)
        }
    };
    let mut redis = match core.redis.conn().await {
        Ok(r) => r,
        Err(e) => return down(e),
    };
    match rate_limit::check_policy(&mut redis, core.redis.prefix(), policy, subject).await {
        Ok(()) => Ok(None),
        Err(RateLimitError::Limited(l)) => Ok(Some(l)),
        Err(RateLimitError::Redis(e)) => down(e),
    }
}

/// Gives back the call [`over_limit`] counted for an attempt that succeeded (a limit on failures).
/// Best effort: without Redis the attempt simply stays counted.
async fn give_back(core: &Core, policy: &Policy, subject: &str) {
    let given_back = match core.redis.conn().await {
        Ok(mut redis) => {
            rate_limit::give_back_policy(&mut redis, core.redis.prefix(), policy, subject).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = given_back {
        tracing::warn!(bucket = policy.bucket, error = %e, "rate limit not given back: Redis unavailable");
    }
}

fn login_settings(core: &Core) -> LoginCodeSettings {
    LoginCodeSettings {
        pepper: core.settings.accounts.login_code_pepper.clone(),
    }
}

/// Input of `requestLoginCode`.
#[derive(InputObject)]
pub struct RequestLoginCodeInput {
    /// The driver's mobile number, e.g. `07911 123456` or `+447911123456`.
    pub phone: String,
}

/// Result of `requestLoginCode`.
#[derive(SimpleObject, Default)]
pub struct RequestLoginCodePayload {
    /// The number the code was sent to, E.164, for the app to show.
    pub phone: Option<String>,
    /// When the code stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// With a `RATE_LIMITED` error: seconds until another code may be asked for.
    pub retry_after_seconds: Option<i32>,
    /// `INVALID_PHONE` (`phone`), `RATE_LIMITED`.
    pub user_errors: Vec<UserError>,
}

impl RequestLoginCodePayload {
    fn limited(l: RateLimited) -> Self {
        Self {
            retry_after_seconds: Some(retry_after(l.retry_after_secs)),
            user_errors: vec![l.user_error().into()],
            ..Self::default()
        }
    }
}

/// Input of `verifyLoginCode`.
#[derive(InputObject)]
pub struct VerifyLoginCodeInput {
    /// The number the code was sent to, as typed for `requestLoginCode`.
    pub phone: String,
    /// The six digits from the text message.
    pub code: String,
}

/// Result of `verifyLoginCode`.
#[derive(SimpleObject, Default)]
pub struct VerifyLoginCodePayload {
    /// The session token for `Authorization: Bearer …`. Shown this once; keep it in the device's
    /// secure storage.
    pub token: Option<String>,
    /// When the token stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// True when this sign-in created the driver (the app then asks for their profile).
    pub new_driver: Option<bool>,
    /// The signed-in driver.
    pub driver: Option<Driver>,
    /// With a `RATE_LIMITED` error: seconds until another try is accepted.
    pub retry_after_seconds: Option<i32>,
    /// `INVALID_PHONE` (`phone`); `INVALID_CODE`, `CODE_EXPIRED`, `CODE_ALREADY_USED`,
    /// `TOO_MANY_ATTEMPTS` (`code`); `RATE_LIMITED`.
    pub user_errors: Vec<UserError>,
}

/// Input of `staffSignIn`.
#[derive(InputObject)]
pub struct StaffSignInInput {
    /// Sign-in email.
    pub email: String,
    /// Password.
    #[graphql(secret)]
    pub password: String,
}

/// Result of `staffSignIn`. The session itself travels in an `HttpOnly` cookie, never in the body.
#[derive(SimpleObject, Default)]
pub struct StaffSignInPayload {
    /// The signed-in user.
    pub staff: Option<StaffUser>,
    /// When the session (and its cookie) stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// With a `RATE_LIMITED` error: seconds until another try is accepted.
    pub retry_after_seconds: Option<i32>,
    /// `INVALID_CREDENTIALS`, `ACCOUNT_DISABLED`, `RATE_LIMITED`.
    pub user_errors: Vec<UserError>,
}

/// Result of `staffSignOut`.
#[derive(SimpleObject, Default)]
pub struct StaffSignOutPayload {
    /// True when a live session was ended (false when it had already ended).
    pub signed_out: bool,
    /// Nothing the user can fix; always empty.
    pub user_errors: Vec<UserError>,
}

/// Sign-in mutations.
#[derive(Default)]
pub struct SignInMutation;

#[Object]
impl SignInMutation {
    /// Texts a six-digit sign-in code to a driver's phone (valid 5 minutes, 5 tries). Open to
    /// anyone without a session and to drivers; rate limited per phone and per client address.
    async fn request_login_code(
        &self,
        ctx: &Context<'_>,
        input: RequestLoginCodeInput,
    ) -> async_graphql::Result<RequestLoginCodePayload> {
        guard::require_driver_sign_in_caller(ctx)?;
        let core = core(ctx)?;
        let client = ctx.data_opt::<ClientAddr>().copied().unwrap_or_default();
        if let Some(l) = over_limit(
            ctx,
            core,
            &rate_limit::LOGIN_CODE_PER_CLIENT,
            &client.rate_limit_subject(),
            WhenRedisDown::Refuse,
        )
        .await?
        {
            return Ok(RequestLoginCodePayload::limited(l));
        }
        let phone = match Phone::parse(&input.phone) {
            Ok(p) => p,
            Err(e) => {
                return Ok(RequestLoginCodePayload {
                    user_errors: user_errors(ctx, e)?,
                    ..Default::default()
                });
            }
        };
        if let Some(l) = over_limit(
            ctx,
            core,
            &rate_limit::LOGIN_CODE_PER_PHONE,
            phone.as_str(),
            WhenRedisDown::Refuse,
        )
        .await?
        {
            return Ok(RequestLoginCodePayload::limited(l));
        }
        let mut conn = conn(ctx).await?;
        match accounts::request_login_code(
            &mut conn,
            core.clock.as_ref(),
            phone.as_str(),
            &login_settings(core),
        )
        .await
        {
            Ok(sent) => Ok(RequestLoginCodePayload {
                phone: Some(sent.phone_e164),
                expires_at: Some(sent.expires_at),
                ..Default::default()
            }),
            Err(e) => Ok(RequestLoginCodePayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Checks a sign-in code and opens a driver session, creating the driver on their first
    /// sign-in. Open to anyone without a session and to drivers; failures are limited per
    /// client address and over the whole service, tries per phone; without Redis to count them
    /// no code is checked.
    async fn verify_login_code(
        &self,
        ctx: &Context<'_>,
        input: VerifyLoginCodeInput,
    ) -> async_graphql::Result<VerifyLoginCodePayload> {
        guard::require_driver_sign_in_caller(ctx)?;
        let core = core(ctx)?;
        let phone = match Phone::parse(&input.phone) {
            Ok(p) => p,
            Err(e) => {
                return Ok(VerifyLoginCodePayload {
                    user_errors: user_errors(ctx, e)?,
                    ..Default::default()
                });
            }
        };
        // Per client and deployment-wide failure budgets, then the phone's own: all fail closed,
        // so an outage of Redis never opens guessing without limits.
        let client = ctx
            .data_opt::<ClientAddr>()
            .copied()
            .unwrap_or_default()
            .rate_limit_subject();
        let budgets = [
            (&rate_limit::VERIFY_FAILURES_PER_CLIENT, client.as_str()),
            (
                &rate_limit::VERIFY_FAILURES_GLOBAL,
                rate_limit::GLOBAL_SUBJECT,
            ),
            (&rate_limit::VERIFY_PER_PHONE, phone.as_str()),
        ];
        for (policy, subject) in budgets {
            if let Some(l) = over_limit(ctx, core, policy, subject, WhenRedisDown::Refuse).await? {
                return Ok(VerifyLoginCodePayload {
                    retry_after_seconds: Some(retry_after(l.retry_after_secs)),
                    user_errors: vec![l.user_error().into()],
                    ..Default::default()
                });
            }
        }
        let mut conn = conn(ctx).await?;
        let signed_in = match accounts::verify_login_code(
            &mut conn,
            core.clock.as_ref(),
            phone.as_str(),
            &input.code,
            &login_settings(core),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                return Ok(VerifyLoginCodePayload {
                    user_errors: user_errors(ctx, e)?,
                    ..Default::default()
                });
            }
        };
        // Signed in: not a failure.
        give_back(core, &rate_limit::VERIFY_FAILURES_PER_CLIENT, &client).await;
        give_back(
            core,
            &rate_limit::VERIFY_FAILURES_GLOBAL,
            rate_limit::GLOBAL_SUBJECT,
        )
        .await;
        let driver = accounts::get_driver(&mut conn, signed_in.driver_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        // The request was anonymous; the payload's driver is seen as the session just opened.
        let session =
            accounts::authenticate_driver(&mut conn, core.clock.as_ref(), &signed_in.token)
                .await
                .map_err(|e| internal(ctx, anyhow::Error::new(e)))?;
        let viewer = Principal::Driver(DriverPrincipal {
            driver_id: session.driver_id,
            session_id: session.session_id,
        });
        Ok(VerifyLoginCodePayload {
            token: Some(signed_in.token),
            expires_at: Some(signed_in.expires_at),
            new_driver: Some(signed_in.new_driver),
            driver: Some(Driver::new(driver, viewer)),
            ..Default::default()
        })
    }

    /// Signs a staff user in with email and password and sets the session cookie. Open to anyone
    /// without a session and to staff; rate limited per email.
    async fn staff_sign_in(
        &self,
        ctx: &Context<'_>,
        input: StaffSignInInput,
    ) -> async_graphql::Result<StaffSignInPayload> {
        guard::require_staff_sign_in_caller(ctx)?;
        let core = core(ctx)?;
        let subject = input.email.trim().to_lowercase();
        if let Some(l) = over_limit(
            ctx,
            core,
            &rate_limit::STAFF_SIGN_IN_PER_EMAIL,
            &subject,
            WhenRedisDown::Allow,
        )
        .await?
        {
            return Ok(StaffSignInPayload {
                retry_after_seconds: Some(retry_after(l.retry_after_secs)),
                user_errors: vec![l.user_error().into()],
                ..Default::default()
            });
        }
        let mut conn = conn(ctx).await?;
        let clock = core.clock.as_ref();
        let signed_in =
            match accounts::staff_sign_in(&mut conn, clock, &input.email, &input.password).await {
                Ok(s) => s,
                Err(e) => {
                    return Ok(StaffSignInPayload {
                        user_errors: user_errors(ctx, e)?,
                        ..Default::default()
                    });
                }
            };
        give_back(core, &rate_limit::STAFF_SIGN_IN_PER_EMAIL, &subject).await;
        let staff = accounts::get_staff(&mut conn, signed_in.principal.staff_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        ctx.append_http_header(
            "set-cookie",
            staff_session_cookie(
                &signed_in.token,
                clock.now(),
                signed_in.expires_at,
                core.settings.accounts.staff_cookie_secure,
            ),
        );
        Ok(StaffSignInPayload {
            staff: Some(StaffUser(staff)),
            expires_at: Some(signed_in.expires_at),
            ..Default::default()
        })
    }

    /// Ends the staff session and clears its cookie.
    async fn staff_sign_out(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<StaffSignOutPayload> {
        let staff = guard::require_any_staff(ctx)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let signed_out = accounts::staff_sign_out(&mut conn, core.clock.as_ref(), staff.session_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        ctx.append_http_header(
            "set-cookie",
            clear_staff_session_cookie(core.settings.accounts.staff_cookie_secure),
        );
        Ok(StaffSignOutPayload {
            signed_out,
            user_errors: vec![],
        })
    }
}
