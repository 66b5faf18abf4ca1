DROP TABLE IF EXISTS cover_sessions;
DROP TABLE IF EXISTS enrolment_events;
DROP TABLE IF EXISTS enrolments;
