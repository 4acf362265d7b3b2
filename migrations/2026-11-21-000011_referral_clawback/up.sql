-- A referral bonus earned by a payment (REFERRAL_BONUS_TRIGGER=first_payment) is taken back when
-- that payment is refunded: the referral names the payment, records what was taken back, and the
-- ledger has a reason for it (a negative delta).
ALTER TABLE referrals ADD COLUMN payment_id UUID REFERENCES payments (id);
ALTER TABLE referrals ADD COLUMN credits_taken_back BIGINT NOT NULL DEFAULT 0
    CHECK (credits_taken_back >= 0 AND credits_taken_back <= credits_awarded);
CREATE INDEX referrals_payment_id_idx ON referrals (payment_id) WHERE payment_id IS NOT NULL;

ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_reason_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_reason_check CHECK (reason IN (
    'signup_bonus', 'free_allowance', 'purchase', 'subscription', 'referral_bonus',
    'charge', 'refund', 'admin_grant', 'admin_debit', 'purchase_refund', 'referral_refund'));
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_delta_sign;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_delta_sign CHECK (
    (reason IN ('signup_bonus', 'purchase', 'subscription', 'referral_bonus', 'admin_grant') AND delta > 0)
    OR (reason IN ('charge', 'admin_debit', 'purchase_refund', 'referral_refund') AND delta < 0)
    OR (reason = 'free_allowance' AND delta = 0)
    OR (reason = 'refund' AND delta >= 0));
