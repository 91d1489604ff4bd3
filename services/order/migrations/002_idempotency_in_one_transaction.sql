-- Idempotency-Keys are now taken inside the order's own transaction: a
-- transaction-scoped advisory lock on the key says "in flight" (409 to
-- others) and vanishes with the transaction, even when the process dies,
-- so a key row exists only for a completed request and the separate
-- in-flight claim (and its commit) is gone.
DELETE FROM idempotency_keys WHERE state = 'in_flight';
ALTER TABLE idempotency_keys DROP COLUMN state, DROP COLUMN claim;
ALTER TABLE idempotency_keys ALTER COLUMN response_status SET NOT NULL, ALTER COLUMN response_body SET NOT NULL;
