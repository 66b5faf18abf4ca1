//! What payments service functions are given besides a connection: the Stripe client, the clock,
//! and where links sent to drivers point.

use crate::stripe::StripeApi;
use shared::Settings;
use shared::clock::SharedClock;

/// The handles payments needs. Built once per process (or per test) and shared.
#[derive(Clone, Debug)]
pub struct PaymentsEnv {
    /// The Stripe API.
    pub stripe: StripeApi,
    /// "Now".
    pub clock: SharedClock,
    /// The public base URL of the app, for links in messages to drivers.
    pub public_url: String,
}

impl PaymentsEnv {
    /// Builds the handles from settings (`stripe.*`, `http.public_url`).
    pub fn from_settings(settings: &Settings, clock: SharedClock) -> anyhow::Result<Self> {
        Ok(Self {
            stripe: StripeApi::new(&settings.stripe)?,
            clock,
            public_url: settings.http.public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The app's wallet page, where a driver tops up.
    pub fn wallet_link(&self) -> String {
        format!("{}/wallet", self.public_url)
    }

    /// The page where a driver finishes a top-up that needs them.
    pub fn top_up_link(&self, top_up_id: crate::ids::TopUpId) -> String {
        format!("{}/wallet/top-ups/{top_up_id}", self.public_url)
    }
}
