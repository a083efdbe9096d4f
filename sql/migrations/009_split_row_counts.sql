-- 009: how many rows of each split a run really used (after a budget's caps), so a test F1 is
-- never read without knowing how many test rows it came from.

ALTER TABLE experiments
    ADD COLUMN train_rows      integer CHECK (train_rows >= 0),
    ADD COLUMN validation_rows integer CHECK (validation_rows >= 0),
    ADD COLUMN test_rows       integer CHECK (test_rows >= 0);
