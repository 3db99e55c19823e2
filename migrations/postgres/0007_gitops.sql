-- GitOps: every commit the controller applied, with its outcome. The live
-- commit is the newest one whose apply converged; a failed commit is kept with
-- its error, so `status` can say what is live and why a later one is not.
CREATE TABLE IF NOT EXISTS reconcile_commits (
    project      TEXT    NOT NULL,
    sha          TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    author       TEXT    NOT NULL,
    committed_ms BIGINT  NOT NULL,
    applied_ms   BIGINT  NOT NULL,
    live         BIGINT  NOT NULL,
    message      TEXT    NOT NULL,
    PRIMARY KEY (project, sha)
);
CREATE INDEX IF NOT EXISTS reconcile_commits_by_time
    ON reconcile_commits (project, applied_ms);
