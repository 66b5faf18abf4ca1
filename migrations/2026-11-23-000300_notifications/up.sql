-- Notifications: every SMS and email ShiftCover sends, one row per message. Owned by
-- apps/notifications; no other app writes these tables.
--
-- A row is written in the same transaction as the event that causes it, together with the outbox
-- job that delivers it. `cause` names that event (`login_code:lgc_…`, `cover_started:cs_…`) and is
-- unique, so one event never produces two messages however often it is reported.
--
-- Status: pending → sending → sent → delivered, or failed / undeliverable.
-- `sending` with `sending_since` set means an attempt is in flight; `sending` with it cleared means
-- an attempt ended without knowing whether the provider accepted the message (a timeout after the
-- request went out): the next attempt looks the message up before sending again.
CREATE TABLE notifications (
    id                     uuid        PRIMARY KEY,
    cause                  text        NOT NULL CHECK (char_length(cause) BETWEEN 1 AND 200),
    channel                text        NOT NULL CHECK (channel IN ('sms', 'email')),
    template               text        NOT NULL,
    -- E.164 phone for SMS, address for email; 'erased' once the recipient's account is deleted.
    recipient              text        NOT NULL,
    -- The driver it concerns, when known. No foreign key: drivers belong to accounts, and rows
    -- here must never stop an account from being pseudonymised.
    driver_id              uuid,
    subject                text,
    body_text              text        NOT NULL,
    body_html              text,
    status                 text        NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'undeliverable')),
    -- A stable code for why a message failed (`missing_variable:code`, `recipient_erased`,
    -- `rejected:21211`, `retries_exhausted`, …); set exactly when the status is failed or undeliverable.
    failure_reason         text,
    provider_message_id    text,
    attempts               integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error             text,
    sending_since          timestamptz,
    first_attempt_at       timestamptz,
    last_attempt_at        timestamptz,
    -- When an attempt last ended ambiguously, and whether an email was already re-sent after one
    -- (email cannot be looked up, so it is re-sent at most once).
    ambiguous_at           timestamptz,
    resent_after_ambiguity boolean     NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    sent_at                timestamptz,
    delivered_at           timestamptz,
    failed_at              timestamptz,
    erased_at              timestamptz,
    CONSTRAINT notifications_cause_unique UNIQUE (cause),
    CONSTRAINT notifications_failure_has_reason CHECK (
        (status IN ('failed', 'undeliverable')) = (failure_reason IS NOT NULL)
    ),
    CONSTRAINT notifications_in_flight_is_sending CHECK (sending_since IS NULL OR status = 'sending')
);

-- Delivery callbacks find a message by the provider's id; a provider id belongs to one message.
CREATE UNIQUE INDEX notifications_provider_message_unique
    ON notifications (channel, provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Support and tests look up the messages sent to one phone or address, newest first.
CREATE INDEX notifications_recipient_idx ON notifications (recipient, created_at DESC);
-- Erasure finds a driver's messages.
CREATE INDEX notifications_driver_idx ON notifications (driver_id) WHERE driver_id IS NOT NULL;

-- Tokens of Mailgun webhook signatures already accepted, so a captured request cannot be replayed.
-- Signatures older than five minutes are refused anyway, so older tokens are purged.
CREATE TABLE mailgun_webhook_tokens (
    token       text        PRIMARY KEY CHECK (char_length(token) BETWEEN 1 AND 200),
    received_at timestamptz NOT NULL
);
CREATE INDEX mailgun_webhook_tokens_received_idx ON mailgun_webhook_tokens (received_at);
