-- Package files are written after the job's commit, by a background writer that works through
-- the jobs in id order (ids only grow) and records here how far it got: a crash before a file
-- is written is repaired at the next start. Jobs from before this migration had their file
-- written with the trigger.
CREATE TABLE package_file_progress (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    written_up_to  BIGINT NOT NULL   -- every job with an id up to this one has its file
);
INSERT INTO package_file_progress (id, written_up_to) SELECT 1, COALESCE(MAX(id), 0) FROM jobs;
