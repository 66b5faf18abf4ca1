-- When Stripe was first asked for a top-up's PaymentIntent. Until then a top-up may be cancelled
-- without asking Stripe (an automatic top-up no longer needed); after, never.
ALTER TABLE top_ups ADD COLUMN stripe_requested_at timestamptz;
-- Top-ups still waiting from before this column existed may have been sent: never cancel them
-- unasked.
UPDATE top_ups SET stripe_requested_at = created_at WHERE status = 'created';
