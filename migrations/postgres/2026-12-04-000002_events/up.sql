-- Events (docs/EVENTS.md), as in migrations/sqlite/2026-12-04-000006_events: a job's history
-- and the outbox are one table. Ids come from the identity sequence, but drawn only under the
-- events lock (see the store's events.rs): several instances commit events one after the
-- other, so id order is commit order here too.
ALTER TABLE job_events RENAME TO events;
ALTER SEQUENCE job_events_id_seq RENAME TO events_id_seq;
ALTER INDEX job_events_pkey RENAME TO events_pkey;
ALTER TABLE events ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE events ALTER COLUMN to_status DROP NOT NULL;
ALTER TABLE events ALTER COLUMN reason DROP NOT NULL;
ALTER TABLE events ADD COLUMN type TEXT;
ALTER TABLE events ADD COLUMN subject TEXT COLLATE "C";
ALTER TABLE events ADD COLUMN attempts INTEGER;
ALTER TABLE events ADD COLUMN robot_address TEXT COLLATE "C";
ALTER TABLE events ADD COLUMN last_error TEXT;
ALTER TABLE events ADD COLUMN data TEXT;
UPDATE events e SET
    type = CASE
        WHEN e.from_status IS NULL THEN 'job.created'
        WHEN e.to_status = 'Executed' AND e.from_status = 'Pending' THEN 'job.sent'
        WHEN e.to_status = 'Executed' THEN 'job.acknowledged'
        WHEN e.to_status = 'Succeeded' THEN 'job.succeeded'
        WHEN e.to_status = 'Failed' THEN 'job.failed'
        WHEN e.to_status = 'Cancelled' THEN 'job.cancelled'
        WHEN e.from_status = 'Executed' THEN 'job.requeued'
        WHEN e.reason LIKE 'forced%' THEN 'job.forced'
        ELSE 'job.waiting'
    END,
    subject = 'jobs/' || e.job_id,
    attempts = j.attempts,
    robot_address = j.robot_address,
    last_error = j.last_error
FROM jobs j WHERE j.id = e.job_id;
ALTER TABLE events ALTER COLUMN type SET NOT NULL;
ALTER TABLE events ALTER COLUMN subject SET NOT NULL;
DROP INDEX job_events_by_job;
CREATE INDEX events_by_job ON events (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX events_by_subject ON events (subject, id) WHERE job_id IS NULL;

CREATE TABLE event_stream (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    floor          BIGINT NOT NULL
);
INSERT INTO event_stream (id, floor) VALUES (1, 0);

ALTER TABLE robots ADD COLUMN offline_since BIGINT;
ALTER TABLE robots ADD COLUMN unreachable_alerted BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE robots SET offline_since = last_seen WHERE NOT online;
ALTER TABLE jobs ADD COLUMN overdue_at BIGINT;
