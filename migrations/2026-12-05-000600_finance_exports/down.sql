DROP TABLE finance_exports;
