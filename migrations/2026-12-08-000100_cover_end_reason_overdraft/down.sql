ALTER TABLE cover_sessions DROP CONSTRAINT cover_sessions_end_reason_check;
ALTER TABLE cover_sessions ADD CONSTRAINT cover_sessions_end_reason_check CHECK (end_reason IN
    ('driver', 'partner', 'gap_rule', 'max_length', 'enrolment_cancelled', 'ops'));
