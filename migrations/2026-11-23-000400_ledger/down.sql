DROP TABLE ledger_postings;
DROP TABLE ledger_transactions;
DROP TABLE ledger_accounts;
DROP FUNCTION ledger_refuse_change();
DROP FUNCTION ledger_check_balanced();
