//! Typed ids of the notifications tables.

shared::typed_id!(
    /// One SMS or email (`ntf_…`).
    NotificationId,
    "ntf"
);
