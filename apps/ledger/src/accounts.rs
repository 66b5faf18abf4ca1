//! Ledger accounts.
//!
//! An account is identified by what it is, not by a number someone has to look up: a driver's
//! wallet is (`driver_wallet`, owner id, currency) and every other account is a system account,
//! one per (kind, currency). Accounts are created on first use by [`account_for`]; the unique
//! identity constraint makes that race-safe, so callers never create accounts up front.
//!
//! Each kind has a normal balance side ([`NormalBalance`]): the side its balance sits on when all
//! is well. Balances are stored nowhere; they are sums of postings (see [`crate::balances`]).

use crate::error::LedgerError;
use crate::ids::AccountId;
use crate::schema::ledger_accounts;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Currency;
use std::fmt;
use std::str::FromStr;

/// Longest wallet owner id, in characters.
pub const MAX_OWNER_CHARS: usize = 100;

/// The side on which an account's balance normally sits.
///
/// Postings are signed debit positive, credit negative, so a debit-normal account normally has a
/// positive sum of postings and a credit-normal account a negative one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalBalance {
    /// Assets and expenses: increased by debits.
    Debit,
    /// Liabilities and income: increased by credits.
    Credit,
}

impl NormalBalance {
    /// The stored name: `debit` or `credit`.
    pub fn as_str(self) -> &'static str {
        match self {
            NormalBalance::Debit => "debit",
            NormalBalance::Credit => "credit",
        }
    }

    /// A debit-positive sum of postings seen from this side: positive when the balance sits on
    /// the normal side. For a credit-normal account this is the negated sum.
    pub fn present(self, debit_minus_credit: i64) -> i64 {
        match self {
            NormalBalance::Debit => debit_minus_credit,
            NormalBalance::Credit => -debit_minus_credit,
        }
    }
}

/// The system accounts: one of each per currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemAccount {
    /// Money Stripe holds for ShiftCover: card payments net of fees, until paid out to the bank.
    /// An asset, debit-normal.
    StripeClearing,
    /// Stripe's processing fees. An expense, debit-normal.
    StripeFees,
    /// Premium charged but not yet collected from the driver. An asset, debit-normal. A charge
    /// paid from the wallet at once does not pass through it (see [`crate::session_charge_lines`]).
    PremiumReceivable,
    /// Net premium owed to the insurer (the underwriter), settled by the bordereau. A liability,
    /// credit-normal.
    InsurerPayable,
    /// ShiftCover's commission on premium. Income, credit-normal.
    CommissionIncome,
    /// Insurance Premium Tax owed to HMRC. A liability, credit-normal.
    IptPayable,
    /// Refunds decided but not yet paid back to a card by Stripe: credited when a refund is made
    /// from a wallet, debited when Stripe pays it out of clearing. A liability, credit-normal.
    Refunds,
    /// Stripe's fees for disputes (chargebacks) on card payments: debited when Stripe withdraws
    /// a disputed payment with its fee, credited when Stripe returns the fee. An expense,
    /// debit-normal. The disputed amount itself is taken from the driver's wallet, not booked
    /// here.
    DisputeFees,
}

impl SystemAccount {
    /// Every system account.
    pub const ALL: [SystemAccount; 8] = [
        SystemAccount::StripeClearing,
        SystemAccount::StripeFees,
        SystemAccount::PremiumReceivable,
        SystemAccount::InsurerPayable,
        SystemAccount::CommissionIncome,
        SystemAccount::IptPayable,
        SystemAccount::Refunds,
        SystemAccount::DisputeFees,
    ];

    /// The account kind.
    pub fn kind(self) -> AccountKind {
        match self {
            SystemAccount::StripeClearing => AccountKind::StripeClearing,
            SystemAccount::StripeFees => AccountKind::StripeFees,
            SystemAccount::PremiumReceivable => AccountKind::PremiumReceivable,
            SystemAccount::InsurerPayable => AccountKind::InsurerPayable,
            SystemAccount::CommissionIncome => AccountKind::CommissionIncome,
            SystemAccount::IptPayable => AccountKind::IptPayable,
            SystemAccount::Refunds => AccountKind::Refunds,
            SystemAccount::DisputeFees => AccountKind::DisputeFees,
        }
    }
}

/// Every kind of ledger account, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A driver's prepaid balance: money ShiftCover holds for (owes to) the driver. A liability,
    /// credit-normal. One per driver and currency.
    DriverWallet,
    /// See [`SystemAccount::StripeClearing`].
    StripeClearing,
    /// See [`SystemAccount::StripeFees`].
    StripeFees,
    /// See [`SystemAccount::PremiumReceivable`].
    PremiumReceivable,
    /// See [`SystemAccount::InsurerPayable`].
    InsurerPayable,
    /// See [`SystemAccount::CommissionIncome`].
    CommissionIncome,
    /// See [`SystemAccount::IptPayable`].
    IptPayable,
    /// See [`SystemAccount::Refunds`].
    Refunds,
    /// See [`SystemAccount::DisputeFees`].
    DisputeFees,
}

impl AccountKind {
    /// Every kind.
    pub const ALL: [AccountKind; 9] = [
        AccountKind::DriverWallet,
        AccountKind::StripeClearing,
        AccountKind::StripeFees,
        AccountKind::PremiumReceivable,
        AccountKind::InsurerPayable,
        AccountKind::CommissionIncome,
        AccountKind::IptPayable,
        AccountKind::Refunds,
        AccountKind::DisputeFees,
    ];

    /// The stored name, e.g. `driver_wallet`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::DriverWallet => "driver_wallet",
            AccountKind::StripeClearing => "stripe_clearing",
            AccountKind::StripeFees => "stripe_fees",
            AccountKind::PremiumReceivable => "premium_receivable",
            AccountKind::InsurerPayable => "insurer_payable",
            AccountKind::CommissionIncome => "commission_income",
            AccountKind::IptPayable => "ipt_payable",
            AccountKind::Refunds => "refunds",
            AccountKind::DisputeFees => "dispute_fees",
        }
    }

    /// The side the kind's balance normally sits on (the database checks the same mapping).
    pub fn normal_balance(self) -> NormalBalance {
        match self {
            AccountKind::StripeClearing
            | AccountKind::StripeFees
            | AccountKind::PremiumReceivable
            | AccountKind::DisputeFees => NormalBalance::Debit,
            AccountKind::DriverWallet
            | AccountKind::InsurerPayable
            | AccountKind::CommissionIncome
            | AccountKind::IptPayable
            | AccountKind::Refunds => NormalBalance::Credit,
        }
    }

    /// The system account of this kind, or `None` for wallets.
    pub fn system(self) -> Option<SystemAccount> {
        SystemAccount::ALL.into_iter().find(|s| s.kind() == self)
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored kind name that is not an [`AccountKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown account kind {0:?}")]
pub struct UnknownAccountKind(pub String);

impl FromStr for AccountKind {
    type Err = UnknownAccountKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownAccountKind(s.to_owned()))
    }
}

/// Names an account by what it is. Used in transaction lines; resolved by [`account_for`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountRef {
    /// A driver's wallet in one currency.
    DriverWallet {
        /// The wallet's owner as text, normally a driver id (`drv_…`). The ledger does not look
        /// it up: it is a key, not a foreign key, so that the ledger depends on no other app.
        owner: String,
        /// The wallet's currency.
        currency: Currency,
    },
    /// A system account in one currency.
    System {
        /// Which one.
        account: SystemAccount,
        /// Its currency.
        currency: Currency,
    },
}

impl AccountRef {
    /// A driver's wallet.
    pub fn driver_wallet(owner: impl Into<String>, currency: Currency) -> Self {
        AccountRef::DriverWallet {
            owner: owner.into(),
            currency,
        }
    }

    /// A system account.
    pub fn system(account: SystemAccount, currency: Currency) -> Self {
        AccountRef::System { account, currency }
    }

    /// The account's kind.
    pub fn kind(&self) -> AccountKind {
        match self {
            AccountRef::DriverWallet { .. } => AccountKind::DriverWallet,
            AccountRef::System { account, .. } => account.kind(),
        }
    }

    /// The wallet owner, for wallets.
    pub fn owner(&self) -> Option<&str> {
        match self {
            AccountRef::DriverWallet { owner, .. } => Some(owner),
            AccountRef::System { .. } => None,
        }
    }

    /// The account's currency.
    pub fn currency(&self) -> Currency {
        match self {
            AccountRef::DriverWallet { currency, .. } | AccountRef::System { currency, .. } => {
                *currency
            }
        }
    }

    /// Checks the owner id: 1 to [`MAX_OWNER_CHARS`] visible ASCII characters, no spaces.
    /// Errors: `INVALID_OWNER`.
    pub fn validate(&self) -> Result<(), LedgerError> {
        match self.owner() {
            Some(owner)
                if owner.is_empty()
                    || owner.chars().count() > MAX_OWNER_CHARS
                    || !owner.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Err(LedgerError::InvalidOwner)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for AccountRef {
    /// `driver_wallet:drv_…:GBP`, `stripe_clearing:GBP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRef::DriverWallet { owner, currency } => {
                write!(f, "driver_wallet:{owner}:{currency}")
            }
            AccountRef::System { account, currency } => {
                write!(f, "{}:{currency}", account.kind())
            }
        }
    }
}

/// A stored ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The account.
    pub id: AccountId,
    /// What it is.
    pub account: AccountRef,
    /// The side its balance normally sits on.
    pub normal_balance: NormalBalance,
    /// When it was first used.
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// The account's kind.
    pub fn kind(&self) -> AccountKind {
        self.account.kind()
    }

    /// The account's currency.
    pub fn currency(&self) -> Currency {
        self.account.currency()
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_accounts)]
pub(crate) struct AccountRow {
    pub(crate) id: AccountId,
    pub(crate) kind: String,
    pub(crate) owner_id: Option<String>,
    pub(crate) currency: String,
    pub(crate) normal_balance: String,
    pub(crate) created_at: DateTime<Utc>,
}

impl TryFrom<AccountRow> for Account {
    type Error = LedgerError;

    fn try_from(r: AccountRow) -> Result<Self, LedgerError> {
        // The CHECK constraints match these enums; a mismatch is a bug, reported as internal.
        let kind: AccountKind = r
            .kind
            .parse()
            .map_err(|e| anyhow::anyhow!("account {}: {e}", r.id))?;
        let currency = parse_currency(&r.currency)?;
        let account = match (kind.system(), r.owner_id) {
            (None, Some(owner)) => AccountRef::DriverWallet { owner, currency },
            (Some(account), None) => AccountRef::System { account, currency },
            _ => {
                return Err(anyhow::anyhow!("account {} has an impossible owner", r.id).into());
            }
        };
        let normal_balance = match r.normal_balance.as_str() {
            "debit" => NormalBalance::Debit,
            "credit" => NormalBalance::Credit,
            other => {
                return Err(
                    anyhow::anyhow!("account {} has normal balance {other:?}", r.id).into(),
                );
            }
        };
        Ok(Account {
            id: r.id,
            account,
            normal_balance,
            created_at: r.created_at,
        })
    }
}

/// Parses a stored currency code; an unknown one is a bug, reported as internal.
pub(crate) fn parse_currency(code: &str) -> Result<Currency, LedgerError> {
    code.parse::<Currency>()
        .map_err(|e| LedgerError::Internal(anyhow::anyhow!("stored {e}")))
}

#[derive(Insertable)]
#[diesel(table_name = ledger_accounts)]
#[diesel(treat_none_as_default_value = false)]
struct NewAccountRow<'a> {
    id: AccountId,
    kind: &'a str,
    owner_id: Option<&'a str>,
    currency: &'a str,
    normal_balance: &'a str,
}

/// Filters `ledger_accounts` to the one row `account` names.
fn identity_filter(
    account: &AccountRef,
) -> ledger_accounts::BoxedQuery<'_, diesel::pg::Pg, ledger_accounts::SqlType> {
    let query = ledger_accounts::table
        .filter(ledger_accounts::kind.eq(account.kind().as_str()))
        .filter(ledger_accounts::currency.eq(account.currency().code()))
        .into_boxed();
    match account.owner() {
        Some(owner) => query.filter(ledger_accounts::owner_id.eq(owner)),
        None => query.filter(ledger_accounts::owner_id.is_null()),
    }
}

/// The account `account` names, if it has ever been used. Never creates it.
///
/// Errors: `INVALID_OWNER`.
pub async fn find_account(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Option<Account>, LedgerError> {
    account.validate()?;
    identity_filter(account)
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Account::try_from)
        .transpose()
}

/// The account `account` names, created if this is its first use.
///
/// Race-safe get-or-create: a plain read first (the common case writes nothing), then
/// `INSERT … ON CONFLICT DO NOTHING` on the identity constraint, then a read again, which sees the
/// row a concurrent caller committed. Safe inside the caller's transaction (a failed insert never
/// aborts it). Errors: `INVALID_OWNER`.
pub async fn account_for(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Account, LedgerError> {
    if let Some(found) = find_account(conn, account).await? {
        return Ok(found);
    }
    let kind = account.kind();
    diesel::insert_into(ledger_accounts::table)
        .values(NewAccountRow {
            id: AccountId::new(),
            kind: kind.as_str(),
            owner_id: account.owner(),
            currency: account.currency().code(),
            normal_balance: kind.normal_balance().as_str(),
        })
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    find_account(conn, account).await?.ok_or_else(|| {
        LedgerError::Internal(anyhow::anyhow!(
            "account {account} neither inserted nor found"
        ))
    })
}

/// Gets or creates the account and locks its row until the caller's transaction ends.
///
/// For callers that read a wallet's balance and then spend from it: every such caller locks first,
/// so two spends from one wallet cannot both pass a balance check. The lock is `FOR NO KEY UPDATE`,
/// which does not block other transactions posting to the account (their foreign-key checks take
/// only a key-share lock), so credits and non-locking debits still go through. Call it inside a
/// transaction; outside one the lock ends with the statement. Errors: `INVALID_OWNER`.
pub async fn lock_account(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Account, LedgerError> {
    let found = account_for(conn, account).await?;
    ledger_accounts::table
        .filter(ledger_accounts::id.eq(found.id))
        .select(ledger_accounts::id)
        .for_no_key_update()
        .first::<AccountId>(conn)
        .await?;
    Ok(found)
}

/// Accounts by id (for loaders and reports).
pub async fn get_accounts(
    conn: &mut AsyncPgConnection,
    ids: &[AccountId],
) -> Result<Vec<Account>, LedgerError> {
    ledger_accounts::table
        .filter(ledger_accounts::id.eq_any(ids))
        .select(AccountRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_have_the_documented_normal_side() {
        for kind in AccountKind::ALL {
            assert_eq!(kind.as_str().parse::<AccountKind>().ok(), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert!("cash".parse::<AccountKind>().is_err());
        assert_eq!(
            AccountKind::DriverWallet.normal_balance(),
            NormalBalance::Credit
        );
        assert_eq!(
            AccountKind::StripeClearing.normal_balance(),
            NormalBalance::Debit
        );
        assert_eq!(AccountKind::DriverWallet.system(), None);
        for s in SystemAccount::ALL {
            assert_eq!(s.kind().system(), Some(s));
        }
        assert_eq!(NormalBalance::Credit.present(-250), 250);
        assert_eq!(NormalBalance::Debit.present(-250), -250);
    }

    #[test]
    fn owners_are_checked() {
        let ok = AccountRef::driver_wallet("drv_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b", Currency::Gbp);
        assert!(ok.validate().is_ok());
        for bad in ["", "drv 1", "drv\n1", &"x".repeat(101), "drv_é"] {
            let r = AccountRef::driver_wallet(bad, Currency::Gbp);
            assert!(
                matches!(r.validate(), Err(LedgerError::InvalidOwner)),
                "{bad:?}"
            );
        }
        assert!(
            AccountRef::system(SystemAccount::Refunds, Currency::Eur)
                .validate()
                .is_ok()
        );
        assert_eq!(
            ok.to_string(),
            format!("driver_wallet:{}:GBP", ok.owner().unwrap())
        );
        assert_eq!(
            AccountRef::system(SystemAccount::IptPayable, Currency::Gbp).to_string(),
            "ipt_payable:GBP"
        );
    }
}
