//! Authorization: who may call which root field, and who may see which object.
//!
//! Two layers, both required:
//! - root fields start with a `require_*` check, which answers `UNAUTHENTICATED` to an anonymous
//!   caller and `FORBIDDEN` to a signed-in caller of the wrong kind or role;
//! - objects are checked where they are reached — `node(id)`, and every edge from one object to
//!   another — with the `may_view_*` policy functions. An object the viewer may not see is
//!   answered like one that does not exist (null), so its existence is never revealed.
//!
//! The policy in one place (a partner sees linked drivers once the partners app links them):
//!
//! | object  | driver        | partner key  | ops / admin | finance |
//! |---------|---------------|--------------|-------------|---------|
//! | Driver  | themself      | no           | yes         | no      |
//! | Vehicle | their own     | no           | yes         | no      |
//! | Partner | no            | itself       | yes         | no      |

use crate::context::Viewer;
use crate::errors::coded;
use accounts::{
    DriverId, DriverPrincipal, PartnerId, PartnerPrincipal, Principal, Role, StaffPrincipal,
};
use async_graphql::Context;
use shared::settings::Environment;

/// Operations meant for development and tests only (the demo job) refuse production.
pub fn require_non_production(ctx: &Context<'_>) -> async_graphql::Result<()> {
    let env = ctx
        .data_opt::<shared::core::Core>()
        .map(|c| c.settings.environment)
        .unwrap_or(Environment::Production);
    if env == Environment::Production {
        Err(coded("FORBIDDEN", "not available in production"))
    } else {
        Ok(())
    }
}

/// The request's viewer (anonymous when none was set).
pub fn viewer<'a>(ctx: &'a Context<'_>) -> &'a Viewer {
    static ANON: Viewer = Viewer::ANONYMOUS;
    ctx.data_opt::<Viewer>().unwrap_or(&ANON)
}

/// The request's principal.
pub fn principal<'a>(ctx: &'a Context<'_>) -> &'a Principal {
    viewer(ctx).principal()
}

/// `UNAUTHENTICATED`: the caller must sign in.
pub fn unauthenticated() -> async_graphql::Error {
    coded("UNAUTHENTICATED", "Sign in to continue.")
}

/// `FORBIDDEN`: the caller is signed in but may not do this.
pub fn forbidden() -> async_graphql::Error {
    coded("FORBIDDEN", "You are not allowed to do this.")
}

fn refuse(principal: &Principal) -> async_graphql::Error {
    match principal {
        Principal::Anonymous => unauthenticated(),
        _ => forbidden(),
    }
}

/// The signed-in driver, or `UNAUTHENTICATED` / `FORBIDDEN`.
pub fn require_driver(ctx: &Context<'_>) -> async_graphql::Result<DriverPrincipal> {
    match principal(ctx) {
        Principal::Driver(d) => Ok(*d),
        other => Err(refuse(other)),
    }
}

/// The signed-in staff user of any role, or `UNAUTHENTICATED` / `FORBIDDEN`.
pub fn require_any_staff(ctx: &Context<'_>) -> async_graphql::Result<StaffPrincipal> {
    match principal(ctx) {
        Principal::Staff(s) => Ok(*s),
        other => Err(refuse(other)),
    }
}

/// The signed-in staff user holding `role` (admin holds every role), or `UNAUTHENTICATED` /
/// `FORBIDDEN`.
pub fn require_staff(ctx: &Context<'_>, role: Role) -> async_graphql::Result<StaffPrincipal> {
    match principal(ctx) {
        Principal::Staff(s) if s.has(role) => Ok(*s),
        other => Err(refuse(other)),
    }
}

/// The calling partner, or `UNAUTHENTICATED` / `FORBIDDEN`.
pub fn require_partner(ctx: &Context<'_>) -> async_graphql::Result<PartnerPrincipal> {
    match principal(ctx) {
        Principal::Partner(p) => Ok(p.clone()),
        other => Err(refuse(other)),
    }
}

/// Driver sign-in (asking for and checking SMS codes) is for people without a session and for
/// drivers adding another session; staff and partner credentials have no business there.
pub fn require_driver_sign_in_caller(ctx: &Context<'_>) -> async_graphql::Result<()> {
    match principal(ctx) {
        Principal::Anonymous | Principal::Driver(_) => Ok(()),
        _ => Err(forbidden()),
    }
}

/// Staff sign-in is for people without a session and for staff replacing theirs.
pub fn require_staff_sign_in_caller(ctx: &Context<'_>) -> async_graphql::Result<()> {
    match principal(ctx) {
        Principal::Anonymous | Principal::Staff(_) => Ok(()),
        _ => Err(forbidden()),
    }
}

/// Whether `principal` may see the driver (and through it, the driver's vehicles).
pub fn may_view_driver(principal: &Principal, driver_id: DriverId) -> bool {
    match principal {
        Principal::Driver(d) => d.driver_id == driver_id,
        Principal::Staff(s) => s.has(Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    }
}

/// Whether `principal` may see the partner (and its API keys, never their secrets).
pub fn may_view_partner(principal: &Principal, partner_id: PartnerId) -> bool {
    match principal {
        Principal::Partner(p) => p.partner_id == partner_id,
        Principal::Staff(s) => s.has(Role::Ops),
        Principal::Driver(_) | Principal::Anonymous => false,
    }
}

/// Whether `principal` may see outbox jobs (ops looking at failed work).
pub fn may_view_jobs(principal: &Principal) -> bool {
    matches!(principal, Principal::Staff(s) if s.has(Role::Ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use accounts::{ApiKeyId, DriverSessionId, StaffId, StaffSessionId};

    fn driver(id: DriverId) -> Principal {
        Principal::Driver(DriverPrincipal {
            driver_id: id,
            session_id: DriverSessionId::new(),
        })
    }

    fn staff(role: Role) -> Principal {
        Principal::Staff(StaffPrincipal {
            staff_id: StaffId::new(),
            session_id: StaffSessionId::new(),
            role,
        })
    }

    fn partner(id: PartnerId) -> Principal {
        Principal::Partner(PartnerPrincipal {
            partner_id: id,
            key_id: ApiKeyId::new(),
            scopes: vec![],
            test_mode: false,
        })
    }

    #[test]
    fn drivers_see_themselves_ops_see_everyone_others_no_one() {
        let a = DriverId::new();
        let b = DriverId::new();
        assert!(may_view_driver(&driver(a), a));
        assert!(!may_view_driver(&driver(b), a));
        assert!(may_view_driver(&staff(Role::Ops), a));
        assert!(may_view_driver(&staff(Role::Admin), a));
        assert!(!may_view_driver(&staff(Role::Finance), a));
        assert!(!may_view_driver(&partner(PartnerId::new()), a));
        assert!(!may_view_driver(&Principal::Anonymous, a));
    }

    #[test]
    fn partners_see_only_themselves() {
        let p = PartnerId::new();
        assert!(may_view_partner(&partner(p), p));
        assert!(!may_view_partner(&partner(PartnerId::new()), p));
        assert!(may_view_partner(&staff(Role::Ops), p));
        assert!(!may_view_partner(&staff(Role::Finance), p));
        assert!(!may_view_partner(&driver(DriverId::new()), p));
        assert!(!may_view_partner(&Principal::Anonymous, p));
        assert!(may_view_jobs(&staff(Role::Admin)));
        assert!(!may_view_jobs(&staff(Role::Finance)));
        assert!(!may_view_jobs(&Principal::Anonymous));
    }
}
