-- 008: which class F1 was measured for (binary: the positive label; more classes: macro F1 over
-- class_count), and a stop reason of its own for a dataset that breaks the contract, which is
-- never retried.

ALTER TABLE experiments
    ADD COLUMN positive_label text,
    ADD COLUMN class_count    integer CHECK (class_count >= 2);

ALTER TABLE experiments DROP CONSTRAINT experiments_stop_reason_check;
ALTER TABLE experiments ADD CONSTRAINT experiments_stop_reason_check
    CHECK (stop_reason IN ('completed', 'early_stopped', 'timeout', 'oom', 'nan_loss', 'failed', 'invalid_data'));

-- An experiment stopped for invalid data counts as failed in the run summary.
CREATE OR REPLACE VIEW analytics.tier_summary AS
WITH counts AS (
    SELECT sweep_run_id,
           count(*) AS experiments,
           count(*) FILTER (WHERE status = 'running') AS running,
           count(*) FILTER (WHERE stop_reason IN ('failed', 'oom', 'nan_loss', 'invalid_data')) AS failed,
           count(*) FILTER (WHERE stop_reason = 'early_stopped') AS early_stopped,
           max(test_f1) FILTER (WHERE status = 'finished') AS best_test_f1,
           sum(gpu_hours) AS gpu_hours,
           sum(wall_seconds) AS wall_seconds
    FROM experiments
    GROUP BY sweep_run_id
)
SELECT r.sweep_run_id, r.dag_id, r.run_id, r.tier, r.run_type, r.status, r.started_at, r.finished_at,
       coalesce(c.experiments, 0) AS experiments, coalesce(c.running, 0) AS running,
       coalesce(c.failed, 0) AS failed, coalesce(c.early_stopped, 0) AS early_stopped, c.best_test_f1,
       coalesce(c.gpu_hours, 0) AS gpu_hours, coalesce(c.wall_seconds, 0) AS wall_seconds
FROM sweep_runs r LEFT JOIN counts c USING (sweep_run_id);
