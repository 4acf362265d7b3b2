ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_delta_sign;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_delta_sign CHECK (
    (reason IN ('signup_bonus', 'purchase', 'subscription', 'referral_bonus', 'admin_grant') AND delta > 0)
    OR (reason IN ('charge', 'admin_debit', 'purchase_refund') AND delta < 0)
    OR (reason = 'free_allowance' AND delta = 0)
    OR (reason = 'refund' AND delta >= 0));
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_reason_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_reason_check CHECK (reason IN (
    'signup_bonus', 'free_allowance', 'purchase', 'subscription', 'referral_bonus',
    'charge', 'refund', 'admin_grant', 'admin_debit', 'purchase_refund'));
DROP INDEX referrals_payment_id_idx;
ALTER TABLE referrals DROP COLUMN credits_taken_back;
ALTER TABLE referrals DROP COLUMN payment_id;
