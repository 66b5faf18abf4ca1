//! Jobs whose cause lives in accounts. `workers` registers them; nothing here talks to a queue.

use serde::{Deserialize, Serialize};

/// Send one SMS. Enqueued through the outbox in the same transaction as its cause, so a text is
/// sent if and only if the cause committed.
///
/// The body is carried whole because the login code it contains exists nowhere else in plain
/// text: the handler cannot re-read it. The handler should send at most once per `cause` (Twilio
/// has no idempotency key: record the send, look up before resending after an ambiguous failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSms {
    /// The recipient, E.164.
    pub to: String,
    /// The text to send.
    pub body: String,
    /// What caused it, e.g. `login_code:lgc_…`; also the idempotency key.
    pub cause: String,
}

impl shared::outbox::Job for SendSms {
    const TYPE: &'static str = "SendSms";
    const QUEUE: &'static str = "notifications";

    fn idempotency_key(&self) -> String {
        self.cause.clone()
    }
}
