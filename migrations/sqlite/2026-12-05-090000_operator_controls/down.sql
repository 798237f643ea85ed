ALTER TABLE schedules DROP COLUMN paused;
ALTER TABLE jobs DROP COLUMN retry_of;
