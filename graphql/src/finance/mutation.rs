//! Finance mutations: run a day's reconciliation on demand, note and resolve exceptions.

use super::query::{FinanceException, ReconciliationSummary, summary_of};
use crate::accounts::{conn, core};
use crate::errors::{InternalExt, UserError};
use crate::guard;
use crate::relay::parse_global_id;
use crate::scalars::Date;
use accounts::Role;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use finance::FinanceError;

/// Reconcile a day.
#[derive(InputObject)]
pub struct ReconcileStripeDayInput {
    /// The UTC day.
    pub day: Date,
    /// Import the day's balance transactions and payouts from Stripe first (default true).
    #[graphql(default = true)]
    pub import_from_stripe: bool,
}

/// The result of `reconcileStripeDay`.
#[derive(SimpleObject, Default)]
pub struct ReconcileStripeDayPayload {
    /// The run's summary.
    pub summary: Option<ReconciliationSummary>,
    /// What the user can fix.
    pub user_errors: Vec<UserError>,
}

/// A note on an exception.
#[derive(InputObject)]
pub struct NoteFinanceExceptionInput {
    /// The exception.
    pub id: ID,
    /// The note (1 to 1000 characters).
    pub body: String,
}

/// Resolve an exception.
#[derive(InputObject)]
pub struct ResolveFinanceExceptionInput {
    /// The exception.
    pub id: ID,
    /// Why it needs nothing more (1 to 1000 characters).
    pub reason: String,
}

/// The result of noting or resolving an exception.
#[derive(SimpleObject, Default)]
pub struct FinanceExceptionPayload {
    /// The exception as it stands.
    pub exception: Option<FinanceException>,
    /// What the user can fix.
    pub user_errors: Vec<UserError>,
}

fn user_errors(e: &FinanceError) -> Option<Vec<UserError>> {
    e.user_error().map(|u| vec![u.into()])
}

fn not_found() -> Vec<UserError> {
    vec![UserError {
        field: Some("id".into()),
        code: "NOT_FOUND".into(),
        message: "No exception with that id.".into(),
    }]
}

/// Finance mutations (finance role).
#[derive(Default)]
pub struct FinanceMutation;

#[Object]
impl FinanceMutation {
    /// Imports a UTC day from Stripe (unless told not to) and reconciles it with the ledger.
    async fn reconcile_stripe_day(
        &self,
        ctx: &Context<'_>,
        input: ReconcileStripeDayInput,
    ) -> async_graphql::Result<ReconcileStripeDayPayload> {
        guard::require_staff(ctx, Role::Finance)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let result = async {
            if input.import_from_stripe {
                finance::jobs::import_day(&mut conn, &core.settings, &*core.clock, input.day.0)
                    .await?;
            }
            finance::reconcile_day(&mut conn, &*core.clock, input.day.0).await
        }
        .await;
        match result {
            Ok(s) => Ok(ReconcileStripeDayPayload {
                summary: Some(summary_of(s)),
                user_errors: Vec::new(),
            }),
            Err(e) => match user_errors(&e) {
                Some(errors) => Ok(ReconcileStripeDayPayload {
                    summary: None,
                    user_errors: errors,
                }),
                None => Err(e).internal(ctx),
            },
        }
    }

    /// Adds a note to an exception (audited).
    async fn note_finance_exception(
        &self,
        ctx: &Context<'_>,
        input: NoteFinanceExceptionInput,
    ) -> async_graphql::Result<FinanceExceptionPayload> {
        let staff = guard::require_staff(ctx, Role::Finance)?;
        let Some(id) = parse_global_id::<uuid::Uuid>(&input.id, "FinanceException") else {
            return Ok(FinanceExceptionPayload {
                exception: None,
                user_errors: not_found(),
            });
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let author = staff.staff_id.to_string();
        let result = async {
            finance::exceptions::add_note(&mut conn, &*core.clock, &author, id, &input.body)
                .await?;
            finance::exceptions::get_exception(&mut conn, id).await
        }
        .await;
        match result {
            Ok(e) => Ok(FinanceExceptionPayload {
                exception: Some(FinanceException(e)),
                user_errors: Vec::new(),
            }),
            Err(e) => match user_errors(&e) {
                Some(errors) => Ok(FinanceExceptionPayload {
                    exception: None,
                    user_errors: errors,
                }),
                None => Err(e).internal(ctx),
            },
        }
    }

    /// Resolves an open exception with a reason (audited).
    async fn resolve_finance_exception(
        &self,
        ctx: &Context<'_>,
        input: ResolveFinanceExceptionInput,
    ) -> async_graphql::Result<FinanceExceptionPayload> {
        let staff = guard::require_staff(ctx, Role::Finance)?;
        let Some(id) = parse_global_id::<uuid::Uuid>(&input.id, "FinanceException") else {
            return Ok(FinanceExceptionPayload {
                exception: None,
                user_errors: not_found(),
            });
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let author = staff.staff_id.to_string();
        match finance::exceptions::resolve(&mut conn, &*core.clock, &author, id, &input.reason)
            .await
        {
            Ok(e) => Ok(FinanceExceptionPayload {
                exception: Some(FinanceException(e)),
                user_errors: Vec::new(),
            }),
            Err(e) => match user_errors(&e) {
                Some(errors) => Ok(FinanceExceptionPayload {
                    exception: None,
                    user_errors: errors,
                }),
                None => Err(e).internal(ctx),
            },
        }
    }
}
