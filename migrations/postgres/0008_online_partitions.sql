-- Each online view in a partition of its own (src/store/online_pg.rs): a
-- materialization loads a fresh table, builds its key after the load and swaps
-- it in at commit, instead of maintaining one shared index row by row.
--
-- The table so far becomes the default partition: its rows stay readable
-- through the parent until their view's first swap removes them. Keys compare
-- bytewise ("C"), as Rust's strings do; a partition's columns must match the
-- parent's, so the old table's key takes the same collation.
ALTER TABLE reconcile_online RENAME TO reconcile_online_shared;
ALTER INDEX reconcile_online_pkey RENAME TO reconcile_online_shared_pkey;
ALTER TABLE reconcile_online_shared ALTER COLUMN entity_key TYPE TEXT COLLATE "C";

CREATE TABLE reconcile_online (
    view       TEXT NOT NULL,
    entity_key TEXT COLLATE "C" NOT NULL,
    as_of      TEXT NOT NULL,
    features   TEXT NOT NULL
) PARTITION BY LIST (view);

ALTER TABLE reconcile_online ATTACH PARTITION reconcile_online_shared DEFAULT;
