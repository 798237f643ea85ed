-- Not reversible without losing pool jobs (their robot_address is NULL).
DROP TABLE robot_pools;
