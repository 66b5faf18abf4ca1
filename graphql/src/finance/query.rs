//! Finance queries.

use super::report_error;
use crate::accounts::{conn, core};
use crate::errors::{InternalExt, coded};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use crate::scalars::{Date, MinorUnits};
use accounts::Role;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use finance::period::Month;
use finance::{exceptions, reconcile, reports};

/// Counts and sums of one reconciliation status in one currency (minor units).
#[derive(SimpleObject, Debug, Clone)]
pub struct ReconciliationStatusTotals {
    /// `MATCHED`, `AMOUNT_MISMATCH`, `MISSING_IN_LEDGER`, `MISSING_AT_STRIPE` or `DUPLICATE`.
    pub status: ReconciliationStatus,
    /// ISO currency code.
    pub currency: String,
    /// Items.
    pub count: i32,
    /// Sum of Stripe's gross amounts.
    pub stripe_amount: MinorUnits,
    /// Sum of the ledger's gross amounts.
    pub ledger_amount: MinorUnits,
}

/// The cash of a reconciled day in one currency (minor units).
#[derive(SimpleObject, Debug, Clone)]
pub struct ReconciliationCash {
    /// ISO currency code.
    pub currency: String,
    /// Fees Stripe took.
    pub stripe_fees: MinorUnits,
    /// What Stripe's balance moved by.
    pub stripe_net: MinorUnits,
    /// What the ledger's Stripe clearing moved by.
    pub ledger_clearing: MinorUnits,
    /// Payouts according to Stripe.
    pub stripe_payouts: MinorUnits,
    /// Payouts according to the ledger.
    pub ledger_payouts: MinorUnits,
}

/// The latest reconciliation of a day.
#[derive(SimpleObject, Debug, Clone)]
pub struct ReconciliationSummary {
    /// The UTC day.
    pub day: Date,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
    /// Per status and currency.
    pub statuses: Vec<ReconciliationStatusTotals>,
    /// Cash per currency.
    pub cash: Vec<ReconciliationCash>,
    /// Exceptions the run opened.
    pub new_exceptions: i32,
}

/// A reconciliation status.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconciliationStatus {
    /// Stripe and the ledger agree.
    Matched,
    /// Found on both sides, amounts differ.
    AmountMismatch,
    /// At Stripe, not in the ledger.
    MissingInLedger,
    /// In the ledger, not at Stripe.
    MissingAtStripe,
    /// A second Stripe transaction for one ledger transaction.
    Duplicate,
}

impl ReconciliationStatus {
    fn parse(s: &str) -> Self {
        match s {
            "matched" => Self::Matched,
            "amount_mismatch" => Self::AmountMismatch,
            "missing_in_ledger" => Self::MissingInLedger,
            "missing_at_stripe" => Self::MissingAtStripe,
            _ => Self::Duplicate,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::AmountMismatch => "amount_mismatch",
            Self::MissingInLedger => "missing_in_ledger",
            Self::MissingAtStripe => "missing_at_stripe",
            Self::Duplicate => "duplicate",
        }
    }
}

pub(crate) fn summary_of(s: reconcile::ReconSummary) -> ReconciliationSummary {
    let int = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    ReconciliationSummary {
        day: s.day.into(),
        finished_at: s.finished_at,
        statuses: s
            .statuses
            .into_iter()
            .map(|t| ReconciliationStatusTotals {
                status: ReconciliationStatus::parse(&t.status),
                currency: t.currency,
                count: int(t.count),
                stripe_amount: t.stripe_amount.into(),
                ledger_amount: t.ledger_amount.into(),
            })
            .collect(),
        cash: s
            .cash
            .into_iter()
            .map(|c| ReconciliationCash {
                currency: c.currency,
                stripe_fees: c.stripe_fees.into(),
                stripe_net: c.stripe_net.into(),
                ledger_clearing: c.ledger_clearing.into(),
                stripe_payouts: c.stripe_payouts.into(),
                ledger_payouts: c.ledger_payouts.into(),
            })
            .collect(),
        new_exceptions: int(s.new_exceptions),
    }
}

/// One reconciliation result.
#[derive(SimpleObject, Debug, Clone)]
pub struct ReconciliationItem {
    /// Its status.
    pub status: ReconciliationStatus,
    /// The Stripe balance transaction (`txn_…`).
    pub stripe_id: Option<String>,
    /// Its Stripe type.
    pub stripe_type: Option<String>,
    /// The ledger transaction.
    pub ledger_transaction_id: Option<String>,
    /// Its kind.
    pub ledger_kind: Option<String>,
    /// ISO currency code.
    pub currency: String,
    /// Stripe's gross amount.
    pub stripe_amount: Option<i64>,
    /// The ledger's gross amount.
    pub ledger_amount: Option<i64>,
    /// Stripe's fee.
    pub stripe_fee: Option<i64>,
    /// The ledger's fees.
    pub ledger_fee: Option<i64>,
    /// What differs.
    pub detail: Option<String>,
}

/// An item reconciliation could not match, for finance to work.
pub struct FinanceException(pub(crate) exceptions::ReconException);

#[Object]
impl FinanceException {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("FinanceException", &self.0.id)
    }
    /// `amount_mismatch`, `missing_in_ledger`, `missing_at_stripe`, `duplicate` or `unknown_type`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// `open` or `resolved`.
    async fn status(&self) -> &str {
        &self.0.status
    }
    /// The day reconciled.
    async fn day(&self) -> Date {
        self.0.day.into()
    }
    /// The Stripe balance transaction.
    async fn stripe_id(&self) -> Option<&str> {
        self.0.stripe_id.as_deref()
    }
    /// The ledger transaction.
    async fn ledger_transaction_id(&self) -> Option<String> {
        self.0.ledger_transaction_id.map(|u| u.to_string())
    }
    /// ISO currency code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Stripe's gross amount.
    async fn stripe_amount(&self) -> Option<i64> {
        self.0.stripe_amount
    }
    /// The ledger's gross amount.
    async fn ledger_amount(&self) -> Option<i64> {
        self.0.ledger_amount
    }
    /// What differs.
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
    /// When it was found.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it was resolved.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Why it was resolved.
    async fn resolution(&self) -> Option<&str> {
        self.0.resolution.as_deref()
    }
    /// Notes, oldest first.
    async fn notes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FinanceExceptionNote>> {
        let mut conn = conn(ctx).await?;
        let notes = exceptions::notes_of(&mut conn, self.0.id)
            .await
            .internal(ctx)?;
        Ok(notes
            .into_iter()
            .map(|n| FinanceExceptionNote {
                author: n.author,
                body: n.body,
                created_at: n.created_at,
            })
            .collect())
    }
}

/// A note on an exception.
#[derive(SimpleObject, Debug, Clone)]
pub struct FinanceExceptionNote {
    /// The staff member (`stf_…`).
    pub author: String,
    /// The note.
    pub body: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Which exceptions to list.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinanceExceptionStatus {
    /// Waiting for finance.
    Open,
    /// Done.
    Resolved,
}

/// A trial balance line (driver wallets summed).
#[derive(SimpleObject, Debug, Clone)]
pub struct TrialBalanceLine {
    /// The account kind.
    pub account_kind: String,
    /// ISO currency code.
    pub currency: String,
    /// Sum of debits.
    pub debit: MinorUnits,
    /// Sum of credits.
    pub credit: MinorUnits,
    /// Debits minus credits.
    pub balance: MinorUnits,
}

/// The trial balance at the end of a day.
#[derive(SimpleObject, Debug, Clone)]
pub struct TrialBalance {
    /// The day.
    pub at: Date,
    /// Whether debits equal credits in every currency.
    pub balances: bool,
    /// Lines.
    pub lines: Vec<TrialBalanceLine>,
}

/// IPT of one month.
#[derive(SimpleObject, Debug, Clone)]
pub struct IptMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// ISO currency code.
    pub currency: String,
    /// IPT on premiums charged.
    pub charged: MinorUnits,
    /// IPT given back by refunds.
    pub refunded: MinorUnits,
    /// Payable to HMRC.
    pub payable: MinorUnits,
}

/// A bordereau line.
#[derive(SimpleObject, Debug, Clone)]
pub struct BordereauLine {
    /// When the ledger booked it.
    pub booked_at: DateTime<Utc>,
    /// `charge` or `refund`.
    pub transaction_type: String,
    /// The certificate.
    pub certificate_ref: Option<String>,
    /// The insured.
    pub insured: Option<String>,
    /// The vehicle's registration.
    pub vehicle_registration: Option<String>,
    /// The vehicle.
    pub vehicle: Option<String>,
    /// Cover start.
    pub cover_start: Option<DateTime<Utc>>,
    /// Cover end.
    pub cover_end: Option<DateTime<Utc>>,
    /// ISO currency code.
    pub currency: String,
    /// Gross premium.
    pub gross_premium: i64,
    /// Commission.
    pub commission: i64,
    /// IPT rate in basis points.
    pub ipt_rate_bp: Option<i32>,
    /// IPT.
    pub ipt: i64,
    /// Net premium due to the insurer.
    pub net_premium_due: i64,
}

/// Bordereau totals in one currency.
#[derive(SimpleObject, Debug, Clone)]
pub struct BordereauTotals {
    /// ISO currency code.
    pub currency: String,
    /// Charge lines.
    pub charges: i64,
    /// Refund lines.
    pub refunds: i64,
    /// Gross premium.
    pub gross_premium: MinorUnits,
    /// Commission.
    pub commission: MinorUnits,
    /// IPT.
    pub ipt: MinorUnits,
    /// Net premium due.
    pub net_premium_due: MinorUnits,
}

/// A month's premium bordereau.
#[derive(SimpleObject, Debug, Clone)]
pub struct Bordereau {
    /// `YYYY-MM`.
    pub month: String,
    /// Lines in booking order (at most `first`, from `offset`).
    pub lines: Vec<BordereauLine>,
    /// How many lines the month has.
    pub line_count: i32,
    /// Totals per currency.
    pub totals: Vec<BordereauTotals>,
}

fn month_arg(field: &'static str, s: &str) -> async_graphql::Result<Month> {
    Month::parse(field, s).map_err(|e| {
        let u = e.user_error().unwrap_or_else(|| {
            shared::FieldError::field(field, "INVALID_PERIOD", "expected YYYY-MM")
        });
        coded(u.code, u.message)
    })
}

/// Finance queries (finance role).
#[derive(Default)]
pub struct FinanceQuery;

#[Object]
impl FinanceQuery {
    /// The latest reconciliation of a UTC day; null when the day was never reconciled.
    async fn reconciliation_summary(
        &self,
        ctx: &Context<'_>,
        day: Date,
    ) -> async_graphql::Result<Option<ReconciliationSummary>> {
        guard::require_staff(ctx, Role::Finance)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let s = reconcile::latest_summary(&mut conn, &*core.clock, day.0)
            .await
            .map_err(|e| report_error(ctx, e))?;
        Ok(s.map(summary_of))
    }

    /// The items of the latest reconciliation of a day, optionally of one status.
    async fn reconciliation_items(
        &self,
        ctx: &Context<'_>,
        day: Date,
        status: Option<ReconciliationStatus>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 1000))] first: i32,
    ) -> async_graphql::Result<Vec<ReconciliationItem>> {
        guard::require_staff(ctx, Role::Finance)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let Some(s) = reconcile::latest_summary(&mut conn, &*core.clock, day.0)
            .await
            .map_err(|e| report_error(ctx, e))?
        else {
            return Ok(Vec::new());
        };
        let items = reconcile::run_items(
            &mut conn,
            s.run_id,
            day.0,
            status.map(|s| s.as_str()),
            i64::from(first),
        )
        .await
        .internal(ctx)?;
        Ok(items
            .into_iter()
            .map(|i| ReconciliationItem {
                status: ReconciliationStatus::parse(&i.status),
                stripe_id: i.stripe_id,
                stripe_type: i.stripe_type,
                ledger_transaction_id: i.ledger_transaction_id.map(|u| u.to_string()),
                ledger_kind: i.ledger_kind,
                currency: i.currency,
                stripe_amount: i.stripe_amount,
                ledger_amount: i.ledger_amount,
                stripe_fee: i.stripe_fee,
                ledger_fee: i.ledger_fee,
                detail: i.detail,
            })
            .collect())
    }

    /// The exceptions queue, oldest first.
    async fn finance_exceptions(
        &self,
        ctx: &Context<'_>,
        status: Option<FinanceExceptionStatus>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 100))] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, FinanceException>> {
        guard::require_staff(ctx, Role::Finance)?;
        let mut conn = conn(ctx).await?;
        let after_key = match after {
            None => None,
            Some(cursor) => {
                let id = parse_global_id::<uuid::Uuid>(&cursor, "FinanceException").ok_or_else(
                    || coded("BAD_USER_INPUT", "`after` is not a cursor of this list"),
                )?;
                let e = exceptions::get_exception(&mut conn, id)
                    .await
                    .map_err(|e| report_error(ctx, e))?;
                Some((e.created_at, e.id))
            }
        };
        let status = status.map(|s| match s {
            FinanceExceptionStatus::Open => "open",
            FinanceExceptionStatus::Resolved => "resolved",
        });
        let mut rows = exceptions::list_exceptions(&mut conn, status, after_key, i64::from(first))
            .await
            .map_err(|e| report_error(ctx, e))?;
        let has_next = rows.len() > usize::try_from(first).unwrap_or(0);
        rows.truncate(usize::try_from(first).unwrap_or(0));
        let mut connection = Connection::new(after_key.is_some(), has_next);
        connection.edges.extend(rows.into_iter().map(|e| {
            Edge::new(
                to_global_id("FinanceException", &e.id).to_string(),
                FinanceException(e),
            )
        }));
        Ok(connection)
    }

    /// The trial balance at the end of a UTC day.
    async fn trial_balance(
        &self,
        ctx: &Context<'_>,
        at: Date,
    ) -> async_graphql::Result<TrialBalance> {
        guard::require_staff(ctx, Role::Finance)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let tb = reports::trial_balance(&mut conn, &*core.clock, at.0)
            .await
            .map_err(|e| report_error(ctx, e))?;
        Ok(TrialBalance {
            at: tb.at.into(),
            balances: tb.balances(),
            lines: tb
                .lines
                .into_iter()
                .map(|l| TrialBalanceLine {
                    account_kind: l.account_kind,
                    currency: l.currency,
                    debit: l.debit.into(),
                    credit: l.credit.into(),
                    balance: l.balance.into(),
                })
                .collect(),
        })
    }

    /// IPT payable per month, `from` to `to` inclusive (`YYYY-MM`).
    async fn ipt_payable(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
    ) -> async_graphql::Result<Vec<IptMonth>> {
        guard::require_staff(ctx, Role::Finance)?;
        let (from, to) = (month_arg("from", &from)?, month_arg("to", &to)?);
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let months = reports::ipt_by_month(&mut conn, &*core.clock, from, to)
            .await
            .map_err(|e| report_error(ctx, e))?;
        Ok(months
            .into_iter()
            .map(|m| IptMonth {
                month: m.month,
                currency: m.currency,
                charged: m.charged.into(),
                refunded: m.refunded.into(),
                payable: m.payable.into(),
            })
            .collect())
    }

    /// The premium bordereau of a month (`YYYY-MM`): lines and totals.
    async fn bordereau(
        &self,
        ctx: &Context<'_>,
        month: String,
        #[graphql(default = 100, validator(minimum = 0, maximum = 1000))] first: i32,
        #[graphql(default = 0, validator(minimum = 0))] offset: i32,
    ) -> async_graphql::Result<Bordereau> {
        guard::require_staff(ctx, Role::Finance)?;
        let month = month_arg("month", &month)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let b = reports::bordereau(&mut conn, &*core.clock, month)
            .await
            .map_err(|e| report_error(ctx, e))?;
        let line_count = i32::try_from(b.lines.len()).unwrap_or(i32::MAX);
        Ok(Bordereau {
            month: b.month,
            line_count,
            lines: b
                .lines
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(0))
                .take(usize::try_from(first).unwrap_or(0))
                .map(|l| BordereauLine {
                    booked_at: l.booked_at,
                    transaction_type: l.transaction_type,
                    certificate_ref: l.certificate_ref,
                    insured: l.insured,
                    vehicle_registration: l.vehicle_registration,
                    vehicle: l.vehicle,
                    cover_start: l.cover_start,
                    cover_end: l.cover_end,
                    currency: l.currency,
                    gross_premium: l.gross_premium,
                    commission: l.commission,
                    ipt_rate_bp: l.ipt_rate_bp,
                    ipt: l.ipt,
                    net_premium_due: l.net_premium_due,
                })
                .collect(),
            totals: b
                .totals
                .into_iter()
                .map(|t| BordereauTotals {
                    currency: t.currency,
                    charges: t.charges,
                    refunds: t.refunds,
                    gross_premium: t.gross_premium.into(),
                    commission: t.commission.into(),
                    ipt: t.ipt.into(),
                    net_premium_due: t.net_premium_due.into(),
                })
                .collect(),
        })
    }
}
