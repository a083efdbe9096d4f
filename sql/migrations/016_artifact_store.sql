-- 016: where each experiment's artifacts are in the shared store (decision 20). checkpoint_url is
-- the best checkpoint's URL (s3://..., or its local path where no store is set); predictions_path
-- now holds a store URL too. artifacts_missing names what the store had not taken when the row was
-- written (kept on the training host until a sync sends it); NULL when nothing is missing.

ALTER TABLE experiments
    ADD COLUMN checkpoint_url    text,
    ADD COLUMN artifacts_missing text[];
