-- Cover may end because the wallet reached its overdraft limit (payments' overdraft review).
ALTER TABLE cover_sessions DROP CONSTRAINT cover_sessions_end_reason_check;
ALTER TABLE cover_sessions ADD CONSTRAINT cover_sessions_end_reason_check CHECK (end_reason IN
    ('driver', 'partner', 'gap_rule', 'max_length', 'enrolment_cancelled', 'ops', 'overdraft_limit'))
    NOT VALID;
ALTER TABLE cover_sessions VALIDATE CONSTRAINT cover_sessions_end_reason_check;
