-- Package files are written after the job's commit by a background writer that works through
-- this queue (in the database, like wake_at): a crash before a file is written is repaired at
-- the next start. Jobs from before this migration had their file written with the trigger.
CREATE TABLE unwritten_package_files (
    job_id         BIGINT PRIMARY KEY NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
);
