//! Typed ids of the cover tables.

shared::typed_id!(
    /// A driver's enrolment in a product (`enr_…`).
    EnrolmentId,
    "enr"
);
shared::typed_id!(
    /// One cover session: a period on cover (`cvs_…`).
    CoverSessionId,
    "cvs"
);
