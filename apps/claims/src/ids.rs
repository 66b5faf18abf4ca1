//! Typed ids of the claims tables.

shared::typed_id!(
    /// A claim: one first notice of loss and its handling (`clm_…`).
    ClaimId,
    "clm"
);

shared::typed_id!(
    /// A photo a driver uploaded for a claim (`clp_…`).
    ClaimPhotoId,
    "clp"
);

shared::typed_id!(
    /// A driver's dispute of a session's charge (`dsp_…`).
    DisputeId,
    "dsp"
);
