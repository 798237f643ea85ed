-- Recurring triggers: a cron expression in a zone that creates one job per occurrence.
CREATE TABLE schedules (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    cron           TEXT NOT NULL,                 -- as the user wrote it
    timezone       TEXT NOT NULL,                 -- IANA name
    start_at       BIGINT,
    end_at         BIGINT,
    package        TEXT NOT NULL,                 -- the trigger's Package object as received (JSON)
    package_name   TEXT NOT NULL,
    robot_address  TEXT NOT NULL REFERENCES robots (address),
    robot_name     TEXT NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT TRUE, -- false once deleted or past its end
    next_run_at    BIGINT,                        -- the next occurrence not yet handled
    last_fire_at   BIGINT,                        -- the last occurrence handled
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    ended_reason   TEXT
);
-- The scheduler's second queue, read in time order like jobs' wake_at.
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX jobs_by_schedule ON jobs (schedule_id, status, id) WHERE schedule_id IS NOT NULL;

-- What happened to each occurrence that did not simply create an instance: skipped because
-- one was still pending, caught up after downtime, missed past the misfire grace, the end.
CREATE TABLE schedule_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id    BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    occurrence     BIGINT,
    at             BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    job_id         BIGINT,
    reason         TEXT NOT NULL
);
CREATE INDEX schedule_events_by_schedule ON schedule_events (schedule_id, id);
