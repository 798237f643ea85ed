-- The exact body of the first answer, so that a retried trigger gets the same body back.
ALTER TABLE idempotency_keys ADD COLUMN response TEXT;
