-- Robot pools, as in migrations/sqlite/2026-12-05-100000_pools (docs/POOLS.md).
ALTER TABLE jobs ALTER COLUMN robot_address DROP NOT NULL;
ALTER TABLE jobs ADD COLUMN pool TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN declined_by TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN pool_waiting_since BIGINT;
CREATE INDEX jobs_by_pool ON jobs (pool, status, run_at, id) WHERE pool IS NOT NULL;
ALTER TABLE schedules ALTER COLUMN robot_address DROP NOT NULL;
ALTER TABLE schedules ADD COLUMN pool TEXT COLLATE "C";
CREATE TABLE robot_pools (
    robot_address  TEXT COLLATE "C" NOT NULL REFERENCES robots (address) ON DELETE CASCADE,
    pool           TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (robot_address, pool)
);
CREATE INDEX robot_pools_by_pool ON robot_pools (pool, robot_address);
ALTER TABLE robots ADD COLUMN last_assigned_at BIGINT NOT NULL DEFAULT 0;
