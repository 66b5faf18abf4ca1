ALTER TABLE refunds DROP COLUMN undone_transaction_id;
DROP TABLE chargebacks;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN (
    'top_up', 'session_charge', 'refund', 'adjustment', 'reversal', 'fee', 'payout'));
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_normal_balance_by_kind;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_normal_balance_by_kind CHECK (
    normal_balance = CASE WHEN kind IN ('stripe_clearing', 'stripe_fees', 'premium_receivable')
                          THEN 'debit' ELSE 'credit' END
);
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN (
    'driver_wallet', 'stripe_clearing', 'stripe_fees', 'premium_receivable',
    'insurer_payable', 'commission_income', 'ipt_payable', 'refunds'));
