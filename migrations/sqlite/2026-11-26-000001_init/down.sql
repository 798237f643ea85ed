DROP TABLE idempotency_keys;
DROP TABLE job_events;
DROP TABLE jobs;
DROP TABLE robot_messages;
DROP TABLE robots;
