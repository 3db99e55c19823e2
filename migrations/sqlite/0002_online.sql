-- Online store: the latest feature values per entity for every online view,
-- with a watermark per view so materialization is incremental.
CREATE TABLE IF NOT EXISTS reconcile_online_views (
    view         TEXT    PRIMARY KEY,
    schema_hash  TEXT    NOT NULL,
    source_hash  TEXT    NOT NULL,
    watermark    TEXT    NOT NULL,
    entity_count BIGINT  NOT NULL,
    updated_ms   BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS reconcile_online (
    view       TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    as_of      TEXT NOT NULL,
    features   TEXT NOT NULL,
    PRIMARY KEY (view, entity_key)
);
