ALTER TABLE jobs DROP COLUMN overdue_at;
ALTER TABLE robots DROP COLUMN unreachable_alerted;
ALTER TABLE robots DROP COLUMN offline_since;
DROP TABLE event_stream;
CREATE TABLE job_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    from_status    TEXT,
    to_status      TEXT NOT NULL,
    reason         TEXT NOT NULL
);
INSERT INTO job_events (id, job_id, at, from_status, to_status, reason)
SELECT id, job_id, at, from_status, to_status, COALESCE(reason, '')
FROM events WHERE job_id IS NOT NULL ORDER BY id;
DROP TABLE events;
CREATE INDEX job_events_by_job ON job_events (job_id, id);
