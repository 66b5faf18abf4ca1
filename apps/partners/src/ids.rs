//! Typed ids of the partners tables.

shared::typed_id!(
    /// A link between a partner's driver and a ShiftCover driver (`pdl_…`).
    LinkId,
    "pdl"
);

shared::typed_id!(
    /// A link code a driver created (`plc_…`).
    LinkCodeId,
    "plc"
);

shared::typed_id!(
    /// A partner's webhook endpoint (`whe_…`).
    WebhookEndpointId,
    "whe"
);

shared::typed_id!(
    /// One event's delivery to one endpoint (`whd_…`).
    WebhookDeliveryId,
    "whd"
);
