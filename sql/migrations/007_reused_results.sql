-- 007: an experiment whose full fingerprint already succeeded in an earlier run can be copied
-- instead of trained (the trigger form's "reuse earlier results"); the copy says where it came from.

ALTER TABLE experiments ADD COLUMN reused_from_run_id text;
