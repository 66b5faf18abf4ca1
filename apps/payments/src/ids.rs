//! Typed ids of the payments tables. Stripe's own ids (`cus_…`, `pm_…`, `seti_…`, `pi_…`,
//! `re_…`, `evt_…`, `dp_…`) are kept as text beside them.

shared::typed_id!(
    /// A saved card (`card_…` is Stripe's; ours is `pmt_…`).
    PaymentMethodId,
    "pmt"
);
shared::typed_id!(
    /// One attempt to save a card: a Stripe SetupIntent (`cset_…`).
    CardSetupId,
    "cset"
);
shared::typed_id!(
    /// A wallet top-up: a Stripe PaymentIntent (`top_…`).
    TopUpId,
    "top"
);
shared::typed_id!(
    /// A refund of a top-up or a session charge (`rfd_…`).
    RefundId,
    "rfd"
);
shared::typed_id!(
    /// A stored Stripe webhook event (`sev_…`; Stripe's own id is `evt_…`).
    StripeEventRowId,
    "sev"
);
shared::typed_id!(
    /// A chargeback: a Stripe dispute on one of our top-ups (`cbk_…`; Stripe's own id is
    /// `dp_…`).
    ChargebackId,
    "cbk"
);
