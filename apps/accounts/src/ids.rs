//! Typed ids of the accounts tables. Other apps refer to drivers, vehicles, staff and partners
//! through these types, never through bare UUIDs.

shared::typed_id!(
    /// A driver (`drv_…`).
    DriverId,
    "drv"
);
shared::typed_id!(
    /// A driver's vehicle (`veh_…`).
    VehicleId,
    "veh"
);
shared::typed_id!(
    /// One SMS login code request (`lgc_…`).
    LoginCodeId,
    "lgc"
);
shared::typed_id!(
    /// A driver's signed-in session on a device (`dses_…`). Not a cover session.
    DriverSessionId,
    "dses"
);
shared::typed_id!(
    /// An ops, finance or admin user (`stf_…`).
    StaffId,
    "stf"
);
shared::typed_id!(
    /// A staff user's signed-in session (`sses_…`).
    StaffSessionId,
    "sses"
);
shared::typed_id!(
    /// A partner platform (`prt_…`).
    PartnerId,
    "prt"
);
shared::typed_id!(
    /// A partner API key (`key_…`).
    ApiKeyId,
    "key"
);
