-- Monitor evaluations, kept with their history: one row per evaluation, the
-- whole verdict (every column's method, score, threshold and distributions) as
-- JSON, so a report can be rendered again from the store alone.
CREATE TABLE IF NOT EXISTS reconcile_monitor_evaluations (
    id           BIGSERIAL PRIMARY KEY,
    project      TEXT    NOT NULL,
    monitor      TEXT    NOT NULL,
    evaluated_ms BIGINT NOT NULL,
    reference    TEXT    NOT NULL,
    current      TEXT    NOT NULL,
    drifted      BIGINT  NOT NULL,
    summary      TEXT    NOT NULL,
    report       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS reconcile_monitor_evaluations_by_monitor
    ON reconcile_monitor_evaluations (project, monitor, id);

-- Every prediction an endpoint answered, written in batches off the request
-- path: what prediction drift compares with the Production version's
-- validation predictions.
CREATE TABLE IF NOT EXISTS reconcile_predictions (
    project     TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    at_ms       BIGINT NOT NULL,
    entity      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    class       BIGINT   NOT NULL
);
CREATE INDEX IF NOT EXISTS reconcile_predictions_by_time
    ON reconcile_predictions (project, endpoint, at_ms);
