-- State store: one row per resource with its hash and status condition.
CREATE TABLE IF NOT EXISTS reconcile_resources (
    project       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    spec_hash     TEXT    NOT NULL,
    spec_json     TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    outputs       TEXT    NOT NULL DEFAULT '{}',
    protect       BIGINT  NOT NULL DEFAULT 0,
    last_change_ms BIGINT  NOT NULL,
    last_apply_ms  BIGINT  NOT NULL,
    PRIMARY KEY (project, kind, name)
);

CREATE TABLE IF NOT EXISTS reconcile_events (
    id       BIGSERIAL PRIMARY KEY,
    project  TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    at_ms    BIGINT  NOT NULL,
    action   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    message  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS reconcile_events_by_resource ON reconcile_events (project, kind, name, at_ms);

-- Who holds the apply lock (the lock itself is a file lock or an advisory lock).
CREATE TABLE IF NOT EXISTS reconcile_lock (
    project  TEXT    PRIMARY KEY,
    pid      BIGINT  NOT NULL,
    host     TEXT    NOT NULL,
    since_ms BIGINT  NOT NULL
);

-- Offline store manifest: written in the same transaction as the data it describes.
CREATE TABLE IF NOT EXISTS reconcile_tables (
    table_name  TEXT    PRIMARY KEY,
    schema_hash TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS reconcile_snapshots (
    table_name  TEXT    NOT NULL,
    as_of       TEXT    NOT NULL,
    file_hash   TEXT    NOT NULL,
    expect_hash TEXT    NOT NULL,
    row_count   BIGINT  NOT NULL,
    source      TEXT    NOT NULL,
    loaded_ms   BIGINT  NOT NULL,
    PRIMARY KEY (table_name, as_of)
);
