-- Per-robot credentials (docs/SECURITY.md): a robot that presents one may register only as its
-- address, and an address that has one is protected from every connection without one. The
-- token itself is never stored: only the hex SHA-256 of it, which is what an upgrade request is
-- looked up by. A revoked credential is deleted.
CREATE TABLE robot_credentials (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    robot_address  TEXT NOT NULL REFERENCES robots (address) ON DELETE CASCADE,
    description    TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,               -- hex SHA-256 of rbt_...
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT                              -- its last registration, to the minute
);
CREATE INDEX robot_credentials_by_robot ON robot_credentials (robot_address, id);
