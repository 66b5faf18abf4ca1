ALTER TABLE top_ups DROP COLUMN stripe_requested_at;
