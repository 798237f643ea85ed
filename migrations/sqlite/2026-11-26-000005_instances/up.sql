-- Server instances and what each holds. SQLite serves one instance, but the columns are the same
-- on both backends (crates/store/src/schema.rs describes both), and so is the code that reads them.
CREATE TABLE instances (
    id             TEXT PRIMARY KEY NOT NULL,     -- made up at each start
    started_at     BIGINT NOT NULL,
    lease_until    BIGINT NOT NULL,               -- renewed while it runs; past it, it is dead
    description    TEXT NOT NULL                  -- host and port, for the operator
);
-- The instance that holds the robot's live connection (NULL when offline).
ALTER TABLE robots ADD COLUMN instance_id TEXT;
-- PostgreSQL only (see migrations/postgres): jobs whose package file is still to write. SQLite
-- commits jobs in id order and keeps a watermark instead (package_file_progress); here it stays
-- empty.
CREATE TABLE pending_package_files (
    job_id         BIGINT PRIMARY KEY NOT NULL
);
