-- vigil's state on PostgreSQL: the tables of the SQLite store (src/store/sqlite.rs), with
-- the same meaning. Times are milliseconds since the Unix epoch (BIGINT); `data` columns
-- hold the JSON of the domain's value as vigil wrote it (TEXT: read back byte for byte).
--
-- Applied by `vigil run --store postgres://…` at start (src/store/postgres.rs embeds this
-- directory), or by hand with `sqlx migrate run --source migrations/postgres`: both record
-- it in `_sqlx_migrations`. A database holding a migration this binary does not know is
-- refused at start.
--
-- Room for the cluster (issue #19): the outbox's `claimed_by`/`claimed_until` let a node
-- claim due rows (`FOR UPDATE SKIP LOCKED`) so that several dispatchers never take the
-- same row; a lease/fencing revision on writes comes with a later migration.

CREATE TABLE cursors (
    stage_key TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    pipeline TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    items BIGINT NOT NULL,
    error TEXT,
    failed_stage TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, id);

CREATE TABLE models (
    id BIGSERIAL PRIMARY KEY,
    -- Byte order, as SQLite sorts (`vigil models list`).
    stage_key TEXT COLLATE "C" NOT NULL,
    series TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (stage_key, series, version)
);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX incidents_by_status ON incidents (status, opened_at);
CREATE INDEX incidents_by_opened ON incidents (opened_at);

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    -- (incident, stage, transition): enqueueing twice sends once.
    dedupe TEXT NOT NULL UNIQUE,
    incident_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    data TEXT NOT NULL,
    -- pending, sent, failed, dry_run
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    -- Set when a send starts, cleared when it is rescheduled: a crash leaves it set.
    started_at BIGINT,
    -- The node that took the row to send it, and until when (unused by one node).
    claimed_by TEXT,
    claimed_until BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_by_incident ON outbox (incident_id, stage, status, id);

CREATE TABLE silences (
    id BIGSERIAL PRIMARY KEY,
    data TEXT NOT NULL
);

CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
    incident_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_incident ON audit (incident_id, id);
CREATE INDEX audit_by_time ON audit (ts);

CREATE TABLE feedback (
    id BIGSERIAL PRIMARY KEY,
    incident_id TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    verdict TEXT NOT NULL,
    at BIGINT NOT NULL,
    data TEXT NOT NULL
);
