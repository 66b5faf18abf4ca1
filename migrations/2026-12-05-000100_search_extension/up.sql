-- Trigram matching for the back office's search by part of a name (a trusted extension: the
-- database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
