-- Robot pools (docs/POOLS.md). A job or schedule for a pool has no robot until a job is
-- assigned: robot_address becomes nullable, which SQLite allows only by rebuilding the table
-- (https://www.sqlite.org/lang_altertable.html#otheralter), with foreign keys off so that
-- dropping the old table cascades nothing. The new tables carry every column of the old ones,
-- the operator controls' retry_of and paused included.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE jobs_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    status         TEXT NOT NULL,
    package        TEXT NOT NULL,
    package_name   TEXT NOT NULL,
    robot_address  TEXT REFERENCES robots (address),  -- NULL: a pool job not assigned yet
    robot_name     TEXT NOT NULL,
    run_at         BIGINT NOT NULL,
    schedule_id    BIGINT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_error     TEXT,
    wake_at        BIGINT,
    delivery       INTEGER NOT NULL DEFAULT 0,
    forced         BOOLEAN NOT NULL DEFAULT FALSE,
    sent_at        BIGINT,
    overdue_at     BIGINT,
    pool           TEXT,                          -- the pool it runs in, NULL for one robot's job
    declined_by    TEXT,                          -- the robot that last gave it back to its pool
    pool_waiting_since BIGINT,                    -- due and waiting for a free robot since
    retry_of       BIGINT                         -- 2026-12-05-090000_operator_controls
);
INSERT INTO jobs_new (id, status, package, package_name, robot_address, robot_name, run_at,
    schedule_id, attempts, created_at, updated_at, last_error, wake_at, delivery, forced, sent_at,
    overdue_at, retry_of)
SELECT id, status, package, package_name, robot_address, robot_name, run_at, schedule_id,
    attempts, created_at, updated_at, last_error, wake_at, delivery, forced, sent_at, overdue_at,
    retry_of
FROM jobs;
-- Ids are never reused (robots drop duplicates by job_id): keep the old counter.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobs_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0))
WHERE name = 'jobs_new';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_wake ON jobs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX jobs_by_robot ON jobs (robot_address, status, id);
CREATE INDEX jobs_in_flight ON jobs (id) WHERE delivery IN (1, 2);
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_schedule ON jobs (schedule_id, status, id) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_by_pool ON jobs (pool, status, run_at, id) WHERE pool IS NOT NULL;

CREATE TABLE schedules_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    cron           TEXT NOT NULL,
    timezone       TEXT NOT NULL,
    start_at       BIGINT,
    end_at         BIGINT,
    package        TEXT NOT NULL,
    package_name   TEXT NOT NULL,
    robot_address  TEXT REFERENCES robots (address),  -- NULL for a pool's schedule
    robot_name     TEXT NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    next_run_at    BIGINT,
    last_fire_at   BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    ended_reason   TEXT,
    paused         BOOLEAN NOT NULL DEFAULT FALSE,  -- 2026-12-05-090000_operator_controls
    pool           TEXT
);
INSERT INTO schedules_new (id, cron, timezone, start_at, end_at, package, package_name,
    robot_address, robot_name, active, next_run_at, last_fire_at, created_at, updated_at,
    ended_reason, paused)
SELECT id, cron, timezone, start_at, end_at, package, package_name, robot_address, robot_name,
    active, next_run_at, last_fire_at, created_at, updated_at, ended_reason, paused
FROM schedules;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'schedules_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'schedules_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'schedules'), 0))
WHERE name = 'schedules_new';
DROP TABLE schedules;
ALTER TABLE schedules_new RENAME TO schedules;
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;

-- Membership: which pools each robot belongs to, set by the operator.
CREATE TABLE robot_pools (
    robot_address  TEXT NOT NULL REFERENCES robots (address) ON DELETE CASCADE,
    pool           TEXT NOT NULL,
    PRIMARY KEY (robot_address, pool)
);
CREATE INDEX robot_pools_by_pool ON robot_pools (pool, robot_address);
-- The choice rule: the free robot assigned a job least recently (0: never).
ALTER TABLE robots ADD COLUMN last_assigned_at BIGINT NOT NULL DEFAULT 0;

PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
