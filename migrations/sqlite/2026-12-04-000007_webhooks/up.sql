-- Webhooks (docs/EVENTS.md): receivers of the events, what each is still owed, and what was
-- tried. The events themselves stay in `events`: a webhook only records how far it got.
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    url             TEXT NOT NULL,
    types           TEXT NOT NULL,                 -- JSON array of patterns: job.failed, robot.*
    description     TEXT NOT NULL,
    format          TEXT NOT NULL,                 -- cloudevents or chat
    secret          TEXT NOT NULL,                 -- whsec_...: signs deliveries, shown once
    active          BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    -- The last event id handled: every later event of its types is still to deliver, every
    -- earlier one was delivered, is in the backlog, or was skipped.
    cursor          BIGINT NOT NULL,
    -- The instance delivering it, until lease_until (several instances share PostgreSQL; one
    -- delivers a webhook at a time).
    owner           TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0
);

-- Events owed after a failed attempt, and the later events of the same subject held behind
-- them (attempts 0, never tried yet), so that a subject's events arrive in id order.
CREATE TABLE webhook_backlog (
    webhook_id       BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         BIGINT NOT NULL,
    subject          TEXT NOT NULL,
    event_at         BIGINT NOT NULL,               -- when the event happened (for its age)
    attempts         INTEGER NOT NULL,
    first_attempt_at BIGINT,
    next_attempt_at  BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, event_id)
);

-- Every attempt, and every event skipped while the webhook was disabled: the newest 1,000 per
-- webhook are kept.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL,
    attempt         INTEGER NOT NULL,              -- 0 for a skipped event
    at              BIGINT NOT NULL,
    outcome         TEXT NOT NULL,                 -- delivered, failed, skipped
    http_status     INTEGER,
    error           TEXT,                          -- timeout, refused, dns, tls, ...
    duration_ms     BIGINT
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
