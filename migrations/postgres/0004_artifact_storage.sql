-- Model artifacts are already compact (postcard) and barely compress: store them
-- out of line without pglz, which cost ~6x the insert time of a forest.
ALTER TABLE reconcile_model_artifacts ALTER COLUMN artifact SET STORAGE EXTERNAL;
