DROP TABLE products;
DROP TRIGGER credit_ledger_append_only ON credit_ledger;
DROP FUNCTION credit_ledger_append_only();
DROP TABLE credit_ledger;
DROP TABLE users;
