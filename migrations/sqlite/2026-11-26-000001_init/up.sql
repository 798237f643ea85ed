-- Times are microseconds since the Unix epoch, UTC (architecture invariant 6): integers index and
-- compare fast and mean the same on every backend.

CREATE TABLE robots (
    address        TEXT PRIMARY KEY NOT NULL,   -- normalised MAC (or the free text an old robot sent)
    name           TEXT NOT NULL,
    user_id        TEXT,                        -- JSON of userID (number) or uuid (string), as received
    online         BOOLEAN NOT NULL DEFAULT FALSE,
    connection_id  TEXT,                        -- the live connection, NULL when offline
    protocol       INTEGER NOT NULL DEFAULT 1,  -- 1 field robot, 2 extended protocol
    first_seen     BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL,
    metadata       TEXT NOT NULL                -- the metadata object as received (JSON)
);
CREATE INDEX robots_online ON robots (online, address);

CREATE TABLE robot_messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so keyset pages stay stable after purges
    robot_address  TEXT NOT NULL REFERENCES robots (address) ON DELETE CASCADE,
    connection_id  TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    value          TEXT NOT NULL                        -- JSON as the robot sent it
);
CREATE INDEX robot_messages_by_robot ON robot_messages (robot_address, id);
CREATE INDEX robot_messages_by_time ON robot_messages (received_at);

CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: robots drop duplicates by job_id
    status         TEXT NOT NULL,                 -- Pending, Executed, Succeeded, Failed, Cancelled
    package        TEXT NOT NULL,                 -- the trigger's Package object as received (JSON)
    package_name   TEXT NOT NULL,
    robot_address  TEXT NOT NULL REFERENCES robots (address),
    robot_name     TEXT NOT NULL,
    run_at         BIGINT NOT NULL,               -- the scheduled moment
    schedule_id    BIGINT,
    attempts       INTEGER NOT NULL DEFAULT 0,    -- sendings so far, the first included
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_error     TEXT,
    -- When the scheduler must look at this job next (first sending, a resend after back-off, an
    -- acknowledgement deadline). NULL: nothing to do until an event (a robot registering, a report).
    wake_at        BIGINT,
    -- Delivery phase inside a status: 0 none, 1 claimed for sending (not yet written to the socket),
    -- 2 written and waiting for an acknowledgement (extended robots), 3 written.
    delivery       INTEGER NOT NULL DEFAULT 0,
    forced         BOOLEAN NOT NULL DEFAULT FALSE,
    sent_at        BIGINT                         -- the last sending
);
-- The scheduler's queue: due work in time order. Partial, so finished jobs cost it nothing.
CREATE INDEX jobs_wake ON jobs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX jobs_by_robot ON jobs (robot_address, status, id);
-- Sendings that were under way: read at start to resend what a crash may have cut off.
CREATE INDEX jobs_in_flight ON jobs (id) WHERE delivery IN (1, 2);
CREATE INDEX jobs_by_status ON jobs (status, id);

CREATE TABLE job_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    from_status    TEXT,                          -- NULL for the creation event
    to_status      TEXT NOT NULL,
    reason         TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE idempotency_keys (
    key            TEXT PRIMARY KEY NOT NULL,
    request_hash   TEXT NOT NULL,                 -- what the first request asked for, to refuse a different body
    job_id         BIGINT,                        -- what the first request created
    schedule_id    BIGINT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_at);
