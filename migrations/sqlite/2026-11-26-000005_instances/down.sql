DROP TABLE pending_package_files;
ALTER TABLE robots DROP COLUMN instance_id;
DROP TABLE instances;
