-- The registry: one row per registered system, the versions each has had, the ids the
-- systems file has seeded, each node's status changes, and the nodes' heartbeats.

-- Bumped by every registry write; a write names the revision it was checked against, so
-- two nodes can never both commit a change checked against the same registry.
CREATE TABLE registry_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO registry_revision (id, revision) VALUES (1, 0);

CREATE TABLE systems (
    system_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    -- The SystemInfo as registered, in JSON.
    info TEXT NOT NULL,
    registered_at_us BIGINT NOT NULL,
    last_updated_us BIGINT NOT NULL,
    revision BIGINT NOT NULL
);

CREATE TABLE system_versions (
    system_id TEXT NOT NULL,
    version TEXT NOT NULL,
    -- The registry revision that first registered this version: orders the history.
    revision BIGINT NOT NULL,
    PRIMARY KEY (system_id, version)
);

CREATE TABLE seeded_systems (
    system_id TEXT PRIMARY KEY,
    seeded_at_us BIGINT NOT NULL
);

CREATE TABLE status_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    previous TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE INDEX status_history_by_system ON status_history (system_id, at_us);

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_at_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    gateway TEXT NOT NULL
);
