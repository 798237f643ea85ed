-- Events (docs/EVENTS.md): one table is both a job's history and the outbox that the stream and
-- the webhooks read. A job's history entry is the event that describes its change, so a change
-- writes one row, not two. Ids are AUTOINCREMENT: the one writer commits them in id order, and
-- a consumer that saw id N never afterwards finds a new event below N.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT NOT NULL,                 -- job.created, robot.online, ... (the catalogue)
    subject        TEXT NOT NULL,                 -- jobs/42, robots/001AFFDB45C2, schedules/3, webhooks/2
    at             BIGINT NOT NULL,
    reason         TEXT,                          -- a sentence for a person
    -- A job's event: its history and its state after the change (the rest of the job's state
    -- never changes and is read from its row). Deleted with the job.
    job_id         BIGINT REFERENCES jobs (id) ON DELETE CASCADE,
    from_status    TEXT,                          -- NULL for the creation event
    to_status      TEXT,
    attempts       INTEGER,
    robot_address  TEXT,
    last_error     TEXT,
    -- Any other subject's state after the change, as the store wrote it (JSON).
    data           TEXT
);
INSERT INTO events (id, type, subject, at, reason, job_id, from_status, to_status, attempts,
                    robot_address, last_error)
SELECT e.id,
       CASE
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
       'jobs/' || e.job_id, e.at, e.reason, e.job_id, e.from_status, e.to_status, j.attempts,
       j.robot_address, j.last_error
FROM job_events e JOIN jobs j ON j.id = e.job_id
ORDER BY e.id;
DROP TABLE job_events;
CREATE INDEX events_by_job ON events (job_id, id) WHERE job_id IS NOT NULL;
-- Only the few events that are not about a job: a subject filter on jobs uses events_by_job.
CREATE INDEX events_by_subject ON events (subject, id) WHERE job_id IS NULL;

-- The stream's start: events up to `floor` were trimmed by retention (deleted, or, for a job's
-- history, kept with the job but no longer streamed). Resuming below it is answered with 410.
CREATE TABLE event_stream (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    floor          BIGINT NOT NULL
);
INSERT INTO event_stream (id, floor) VALUES (1, 0);

-- Alerts: when a robot went offline, and whether its robot.unreachable was sent for this outage;
-- when a job's job.overdue was sent.
ALTER TABLE robots ADD COLUMN offline_since BIGINT;
ALTER TABLE robots ADD COLUMN unreachable_alerted BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE robots SET offline_since = last_seen WHERE NOT online;
ALTER TABLE jobs ADD COLUMN overdue_at BIGINT;
