DROP TRIGGER IF EXISTS cover_session_days_balance_insert ON cover_sessions;
DROP TRIGGER IF EXISTS cover_session_days_balance ON cover_sessions;
DROP FUNCTION IF EXISTS cover_session_days_balance();
DROP TABLE IF EXISTS cover_session_days;
DROP FUNCTION IF EXISTS cover_session_days_immutable();
