-- Fencing for a cluster (issue #19, docs/cluster.md): each pipeline's lease revision.
--
-- A node that takes a pipeline's lease (in NATS JetStream) bumps the pipeline's row here
-- and gets the new revision; every write it makes for the pipeline afterwards (incident
-- changes, outbox rows, cursors, runs) reads the row in the same transaction, `FOR SHARE`,
-- and is refused when the revision is not its own. The row lock orders a write against
-- a takeover: a write that read the old revision commits before the new owner's bump,
-- and none that reads it after the bump gets through. One node (no `--cluster`) never
-- touches this table.

CREATE TABLE pipeline_leases (
    pipeline TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    -- The node holding it, and since when (ms since the epoch): for people and tools.
    node TEXT NOT NULL,
    acquired_at BIGINT NOT NULL
);
