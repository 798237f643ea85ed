-- Operator controls (http-api.md): a job run again points at the one it retries, and a schedule
-- can be paused. A paused schedule keeps `active` and has no `next_run_at`, so the due query
-- (and its partial index) never sees it, on every instance.
ALTER TABLE jobs ADD COLUMN retry_of BIGINT;
ALTER TABLE schedules ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;
