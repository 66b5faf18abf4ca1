//! Back-office mutations: partners and their API keys (ops; admin holds every role) and staff
//! users (admin only). Each is audited by the accounts app with the staff user as actor.

use super::{
    Partner, PartnerApiKey, PartnerScope, PartnerStatus, StaffRole, StaffUser, conn, core,
    not_found, parse_input_id, user_errors,
};
use crate::errors::{UserError, internal};
use crate::guard;
use accounts::{Actor, ApiKeyId, NewStaff, PartnerId, Role, Scope, StaffId};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

/// Input of `createPartner`.
#[derive(InputObject)]
pub struct CreatePartnerInput {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `createPartner`.
#[derive(SimpleObject, Default)]
pub struct CreatePartnerPayload {
    /// The new partner (active, without keys).
    pub partner: Option<Partner>,
    /// `INVALID_NAME` (`name`).
    pub user_errors: Vec<UserError>,
}

/// Input of `setPartnerStatus`.
#[derive(InputObject)]
pub struct SetPartnerStatusInput {
    /// The partner's global id.
    pub partner_id: ID,
    /// `SUSPENDED` refuses every key of the partner at once; `ACTIVE` lets them work again.
    pub status: PartnerStatus,
}

/// Result of `setPartnerStatus`.
#[derive(SimpleObject, Default)]
pub struct SetPartnerStatusPayload {
    /// The partner.
    pub partner: Option<Partner>,
    /// `NOT_FOUND` (`partnerId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `createPartnerApiKey`.
#[derive(InputObject)]
pub struct CreatePartnerApiKeyInput {
    /// The partner's global id.
    pub partner_id: ID,
    /// What the key may do; at least one.
    #[graphql(validator(max_items = 10))]
    pub scopes: Vec<PartnerScope>,
    /// A test key (`sck_test_…`) sees and creates only test data.
    #[graphql(default = false)]
    pub test_mode: bool,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `createPartnerApiKey`.
#[derive(SimpleObject, Default)]
pub struct CreatePartnerApiKeyPayload {
    /// The new key.
    pub api_key: Option<PartnerApiKey>,
    /// The key itself (`sck_live_…`), shown this once: only its hash is kept.
    pub secret: Option<String>,
    /// `INVALID_SCOPE` (`scopes`), `NOT_FOUND` (`partnerId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `rotatePartnerApiKey`.
#[derive(InputObject)]
pub struct RotatePartnerApiKeyInput {
    /// The global id of the key to replace.
    pub key_id: ID,
    /// Hours the old key keeps working, so the partner can deploy the new one (0 to 168).
    #[graphql(default = 24)]
    pub overlap_hours: i32,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `rotatePartnerApiKey`.
#[derive(SimpleObject, Default)]
pub struct RotatePartnerApiKeyPayload {
    /// The new key, with the old one's partner, scopes and mode.
    pub api_key: Option<PartnerApiKey>,
    /// The new key itself, shown this once.
    pub secret: Option<String>,
    /// The old key, now with its expiry.
    pub previous_api_key: Option<PartnerApiKey>,
    /// `INVALID_OVERLAP` (`overlapHours`), `NOT_FOUND`, `API_KEY_REVOKED`, `API_KEY_EXPIRED`
    /// (`keyId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `revokePartnerApiKey`.
#[derive(InputObject)]
pub struct RevokePartnerApiKeyInput {
    /// The key's global id.
    pub key_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `revokePartnerApiKey`.
#[derive(SimpleObject, Default)]
pub struct RevokePartnerApiKeyPayload {
    /// The key, now revoked (revoking twice keeps the first time).
    pub api_key: Option<PartnerApiKey>,
    /// `NOT_FOUND` (`keyId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `createStaffUser`.
#[derive(InputObject)]
pub struct CreateStaffUserInput {
    /// Sign-in email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// Initial password, at least 12 characters.
    #[graphql(secret)]
    pub password: String,
}

/// Result of `createStaffUser`.
#[derive(SimpleObject, Default)]
pub struct CreateStaffUserPayload {
    /// The new user.
    pub staff: Option<StaffUser>,
    /// `INVALID_EMAIL`, `DUPLICATE_EMAIL` (`email`), `INVALID_NAME` (`name`), `WEAK_PASSWORD`,
    /// `PASSWORD_TOO_LONG` (`password`).
    pub user_errors: Vec<UserError>,
}

/// Input of `disableStaffUser`.
#[derive(InputObject)]
pub struct DisableStaffUserInput {
    /// The user's global id.
    pub staff_id: ID,
}

/// Result of `disableStaffUser`.
#[derive(SimpleObject, Default)]
pub struct DisableStaffUserPayload {
    /// The user, now disabled; their sessions have ended.
    pub staff: Option<StaffUser>,
    /// `NOT_FOUND`, `CANNOT_DISABLE_SELF` (`staffId`).
    pub user_errors: Vec<UserError>,
}

/// Back-office mutations.
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Sets up a partner platform (ops).
    async fn create_partner(
        &self,
        ctx: &Context<'_>,
        input: CreatePartnerInput,
    ) -> async_graphql::Result<CreatePartnerPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(CreatePartnerPayload {
                    partner: None,
                    user_errors: vec![e],
                });
            }
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::create_partner_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            &input.name,
            reason,
        )
        .await
        {
            Ok(p) => Ok(CreatePartnerPayload {
                partner: Some(Partner::new(p, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(CreatePartnerPayload {
                partner: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Suspends or reactivates a partner (ops).
    async fn set_partner_status(
        &self,
        ctx: &Context<'_>,
        input: SetPartnerStatusInput,
    ) -> async_graphql::Result<SetPartnerStatusPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(partner_id) = parse_input_id::<PartnerId>(&input.partner_id, "Partner") else {
            return Ok(SetPartnerStatusPayload {
                partner: None,
                user_errors: not_found("partnerId"),
            });
        };
        let mut conn = conn(ctx).await?;
        match accounts::set_partner_status(
            &mut conn,
            Actor::Staff(staff.staff_id),
            partner_id,
            input.status.into(),
        )
        .await
        {
            Ok(p) => Ok(SetPartnerStatusPayload {
                partner: Some(Partner::new(p, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(SetPartnerStatusPayload {
                partner: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Creates an API key for a partner (ops). The key is in the payload this once.
    async fn create_partner_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreatePartnerApiKeyInput,
    ) -> async_graphql::Result<CreatePartnerApiKeyPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(partner_id) = parse_input_id::<PartnerId>(&input.partner_id, "Partner") else {
            return Ok(CreatePartnerApiKeyPayload {
                user_errors: not_found("partnerId"),
                ..Default::default()
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(CreatePartnerApiKeyPayload {
                    user_errors: vec![e],
                    ..Default::default()
                });
            }
        };
        let scopes: Vec<Scope> = input.scopes.iter().copied().map(Scope::from).collect();
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::create_api_key_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            partner_id,
            &scopes,
            input.test_mode,
            reason,
        )
        .await
        {
            Ok((info, secret)) => Ok(CreatePartnerApiKeyPayload {
                api_key: Some(PartnerApiKey(info)),
                secret: Some(secret),
                user_errors: vec![],
            }),
            Err(e) => Ok(CreatePartnerApiKeyPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Replaces a partner's API key (ops): a new key with the same scopes, while the old one
    /// keeps working for the overlap.
    async fn rotate_partner_api_key(
        &self,
        ctx: &Context<'_>,
        input: RotatePartnerApiKeyInput,
    ) -> async_graphql::Result<RotatePartnerApiKeyPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(key_id) = parse_input_id::<ApiKeyId>(&input.key_id, "PartnerApiKey") else {
            return Ok(RotatePartnerApiKeyPayload {
                user_errors: not_found("keyId"),
                ..Default::default()
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(RotatePartnerApiKeyPayload {
                    user_errors: vec![e],
                    ..Default::default()
                });
            }
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let overlap = chrono::Duration::hours(i64::from(input.overlap_hours));
        match accounts::rotate_api_key_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            key_id,
            overlap,
            reason,
        )
        .await
        {
            Ok((info, secret)) => {
                let previous = accounts::get_api_key(&mut conn, key_id)
                    .await
                    .map_err(|e| internal(ctx, e))?;
                Ok(RotatePartnerApiKeyPayload {
                    api_key: Some(PartnerApiKey(info)),
                    secret: Some(secret),
                    previous_api_key: Some(PartnerApiKey(previous)),
                    user_errors: vec![],
                })
            }
            Err(e) => {
                let mut errors = user_errors(ctx, e)?;
                for err in &mut errors {
                    if err.field.as_deref() == Some("overlap") {
                        err.field = Some("overlapHours".into());
                    }
                }
                Ok(RotatePartnerApiKeyPayload {
                    user_errors: errors,
                    ..Default::default()
                })
            }
        }
    }

    /// Revokes a partner's API key at once (ops).
    async fn revoke_partner_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokePartnerApiKeyInput,
    ) -> async_graphql::Result<RevokePartnerApiKeyPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(key_id) = parse_input_id::<ApiKeyId>(&input.key_id, "PartnerApiKey") else {
            return Ok(RevokePartnerApiKeyPayload {
                api_key: None,
                user_errors: not_found("keyId"),
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(RevokePartnerApiKeyPayload {
                    api_key: None,
                    user_errors: vec![e],
                });
            }
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::revoke_api_key_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            key_id,
            reason,
        )
        .await
        {
            Ok(info) => Ok(RevokePartnerApiKeyPayload {
                api_key: Some(PartnerApiKey(info)),
                user_errors: vec![],
            }),
            Err(e) => Ok(RevokePartnerApiKeyPayload {
                api_key: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Creates a staff user (admin).
    async fn create_staff_user(
        &self,
        ctx: &Context<'_>,
        input: CreateStaffUserInput,
    ) -> async_graphql::Result<CreateStaffUserPayload> {
        let admin = guard::require_staff(ctx, Role::Admin)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let new = NewStaff {
            email: input.email,
            name: input.name,
            role: input.role.into(),
            password: input.password,
        };
        match accounts::create_staff(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(admin.staff_id),
            new,
        )
        .await
        {
            Ok(s) => Ok(CreateStaffUserPayload {
                staff: Some(StaffUser(s)),
                user_errors: vec![],
            }),
            Err(e) => Ok(CreateStaffUserPayload {
                staff: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Disables a staff user and ends their sessions (admin). Admins cannot disable themselves.
    async fn disable_staff_user(
        &self,
        ctx: &Context<'_>,
        input: DisableStaffUserInput,
    ) -> async_graphql::Result<DisableStaffUserPayload> {
        let admin = guard::require_staff(ctx, Role::Admin)?;
        let Some(staff_id) = parse_input_id::<StaffId>(&input.staff_id, "StaffUser") else {
            return Ok(DisableStaffUserPayload {
                staff: None,
                user_errors: not_found("staffId"),
            });
        };
        if staff_id == admin.staff_id {
            return Ok(DisableStaffUserPayload {
                staff: None,
                user_errors: vec![UserError {
                    field: Some("staffId".into()),
                    code: "CANNOT_DISABLE_SELF".into(),
                    message: "You cannot disable your own account.".into(),
                }],
            });
        }
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::disable_staff(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(admin.staff_id),
            staff_id,
        )
        .await
        {
            Ok(s) => Ok(DisableStaffUserPayload {
                staff: Some(StaffUser(s)),
                user_errors: vec![],
            }),
            Err(e) => Ok(DisableStaffUserPayload {
                staff: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }
}
