//! Who is asking: a partner in live or test mode, or ops.

use accounts::{PartnerId, PartnerPrincipal, StaffId};

/// A partner acting through one of its API keys: which partner, and whether the key is a test
/// key. Test keys see and change only test data (links, events, endpoints, deliveries), live keys
/// only live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartnerScope {
    /// The partner.
    pub partner_id: PartnerId,
    /// Whether the key is a test key.
    pub test_mode: bool,
}

impl PartnerScope {
    /// Live mode for `partner_id`.
    pub fn live(partner_id: PartnerId) -> Self {
        Self {
            partner_id,
            test_mode: false,
        }
    }

    /// Test mode for `partner_id`.
    pub fn test(partner_id: PartnerId) -> Self {
        Self {
            partner_id,
            test_mode: true,
        }
    }
}

impl From<&PartnerPrincipal> for PartnerScope {
    fn from(p: &PartnerPrincipal) -> Self {
        Self {
            partner_id: p.partner_id,
            test_mode: p.test_mode,
        }
    }
}

/// Who reads or replays webhook deliveries: the partner (its own, in its key's mode) or ops
/// (any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// A partner through its API key.
    Partner(PartnerScope),
    /// An ops user.
    Staff(StaffId),
}
