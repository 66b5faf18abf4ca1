//! Who is making a request, as established by `authenticate_*`, and who did something, for the
//! audit log. The API layer puts one [`Principal`] on each request and checks it on every node
//! and edge; service functions that change state take an [`Actor`] so the audit row names them.

use crate::ids::{ApiKeyId, DriverId, DriverSessionId, PartnerId, StaffId, StaffSessionId};
use crate::partners::Scope;
use crate::staff::Role;
use shared::audit::{ActorType, AuditEntry};

/// A signed-in driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverPrincipal {
    /// The driver.
    pub driver_id: DriverId,
    /// The session their token belongs to (what "sign out" ends).
    pub session_id: DriverSessionId,
}

/// A signed-in ops, finance or admin user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffPrincipal {
    /// The staff user.
    pub staff_id: StaffId,
    /// Their session.
    pub session_id: StaffSessionId,
    /// Their role, read at authentication (so a role change applies from the next request).
    pub role: Role,
}

impl StaffPrincipal {
    /// Whether this user may do what `required` may do.
    pub fn has(&self, required: Role) -> bool {
        self.role.has(required)
    }
}

/// A partner platform calling with an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerPrincipal {
    /// The partner.
    pub partner_id: PartnerId,
    /// The key it used (for logs and per-key rate limits).
    pub key_id: ApiKeyId,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// Test keys see and create only test data.
    pub test_mode: bool,
}

impl PartnerPrincipal {
    /// Whether the key carries `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Whoever made a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Principal {
    /// No credential was presented.
    #[default]
    Anonymous,
    /// A driver, through the app.
    Driver(DriverPrincipal),
    /// A staff user, through the admin UI.
    Staff(StaffPrincipal),
    /// A partner platform, through its API key.
    Partner(PartnerPrincipal),
}

impl Principal {
    /// The actor to record for a change this principal makes; `None` when anonymous.
    pub fn actor(&self) -> Option<Actor> {
        match self {
            Principal::Anonymous => None,
            Principal::Driver(d) => Some(Actor::Driver(d.driver_id)),
            Principal::Staff(s) => Some(Actor::Staff(s.staff_id)),
            Principal::Partner(p) => Some(Actor::Partner(p.partner_id)),
        }
    }
}

/// Who made a change, as written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A driver acting on their own account.
    Driver(DriverId),
    /// A staff user.
    Staff(StaffId),
    /// A partner platform.
    Partner(PartnerId),
    /// ShiftCover itself: a job, the CLI, a seed.
    System,
}

impl Actor {
    fn parts(self) -> (ActorType, Option<String>) {
        match self {
            Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
            Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
            Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
            Actor::System => (ActorType::System, None),
        }
    }

    /// An audit entry with this actor and the reason the person gave.
    pub(crate) fn entry_because<'a>(
        self,
        action: &'a str,
        subject_type: &'a str,
        subject_id: String,
        reason: Option<&'a str>,
        details: serde_json::Value,
    ) -> AuditEntry<'a> {
        AuditEntry {
            reason,
            ..self.entry(action, subject_type, subject_id, details)
        }
    }

    /// An audit entry with this actor.
    pub(crate) fn entry<'a>(
        self,
        action: &'a str,
        subject_type: &'a str,
        subject_id: String,
        details: serde_json::Value,
    ) -> AuditEntry<'a> {
        let (actor_type, actor_id) = self.parts();
        AuditEntry {
            actor_type,
            actor_id,
            action,
            subject_type,
            subject_id,
            reason: None,
            details,
        }
    }
}
