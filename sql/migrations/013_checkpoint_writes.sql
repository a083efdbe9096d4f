-- 013: what an experiment's saves wrote, over every attempt. A new best saves the model only; the
-- full resumable state (optimizer, scheduler, RNG) is saved at most every full_checkpoint_minutes
-- and on SIGTERM (training/engine/checkpoints.py). Rows from before this migration have NULLs.

ALTER TABLE experiments
    ADD COLUMN checkpoint_bytes_written bigint  CHECK (checkpoint_bytes_written >= 0),
    ADD COLUMN full_checkpoints_saved   integer CHECK (full_checkpoints_saved >= 0),
    ADD COLUMN model_checkpoints_saved  integer CHECK (model_checkpoints_saved >= 0);
