-- Model registry. Versions are content-addressed (identity = hash of the run
-- spec, the training-set bytes and the trainer); stages are a column with a
-- partial unique index, so the database itself refuses two Production versions.
CREATE TABLE IF NOT EXISTS reconcile_model_versions (
    project           TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    version           BIGINT  NOT NULL,
    identity          TEXT    NOT NULL,
    run               TEXT    NOT NULL,
    algorithm         TEXT    NOT NULL,
    params            TEXT    NOT NULL,
    metrics           TEXT    NOT NULL,
    training_set_hash TEXT    NOT NULL,
    features          TEXT    NOT NULL,
    artifact_hash     TEXT    NOT NULL,
    trainer           TEXT    NOT NULL,
    training_ms       BIGINT  NOT NULL,
    stage             TEXT    NOT NULL DEFAULT 'None',
    created_ms        BIGINT  NOT NULL,
    PRIMARY KEY (project, model, version),
    UNIQUE (project, model, identity)
);
CREATE UNIQUE INDEX IF NOT EXISTS reconcile_one_production
    ON reconcile_model_versions (project, model) WHERE stage = 'Production';

-- Artifacts apart, so listing versions never reads model bytes.
CREATE TABLE IF NOT EXISTS reconcile_model_artifacts (
    project  TEXT    NOT NULL,
    model    TEXT    NOT NULL,
    version  BIGINT  NOT NULL,
    artifact BYTEA   NOT NULL,
    PRIMARY KEY (project, model, version)
);

-- Named aliases (`production` mirrors the Production stage, as MLflow 2.9+ would).
CREATE TABLE IF NOT EXISTS reconcile_model_aliases (
    project    TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    alias      TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    updated_ms BIGINT  NOT NULL,
    PRIMARY KEY (project, model, alias)
);

-- Every stage change with its cause (spec, policy, manual) and reason.
CREATE TABLE IF NOT EXISTS reconcile_promotions (
    id         BIGSERIAL PRIMARY KEY,
    project    TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    from_stage TEXT    NOT NULL,
    to_stage   TEXT    NOT NULL,
    cause      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    at_ms      BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS reconcile_promotions_by_model ON reconcile_promotions (project, model, id);
