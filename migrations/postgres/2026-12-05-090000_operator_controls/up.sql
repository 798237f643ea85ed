-- Operator controls, as in migrations/sqlite/2026-12-05-090000_operator_controls.
ALTER TABLE jobs ADD COLUMN retry_of BIGINT;
ALTER TABLE schedules ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;
