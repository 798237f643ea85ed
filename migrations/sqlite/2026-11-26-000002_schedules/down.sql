DROP TABLE schedule_events;
DROP INDEX jobs_by_schedule;
DROP TABLE schedules;
