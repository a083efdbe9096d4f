-- 004: views in the analytics schema, each named for the question it answers. Selection is by
-- validation F1 (the checkpoint and the configuration are chosen on it); test F1 is what is reported.

CREATE SCHEMA analytics;

-- Every experiment of every run, ranked within its run and within its model.
CREATE VIEW analytics.experiment_leaderboard AS
WITH finished AS (
    SELECT r.sweep_run_id, r.dag_id, r.run_id, r.tier, r.run_type, r.started_at AS run_started_at,
           e.experiment_id, e.experiment_key, e.model_id, e.is_stand_in, e.learning_rate, e.batch_size,
           e.num_epochs, e.weight_decay, e.gradient_accumulation_steps, e.validation_f1, e.test_f1,
           e.test_precision, e.test_recall, e.test_accuracy, e.stop_reason, e.best_step, e.steps_run,
           e.gpu_hours, e.wall_seconds, e.time_to_best_seconds
    FROM experiments e JOIN sweep_runs r USING (sweep_run_id)
    WHERE e.status = 'finished'
)
SELECT *,
       rank() OVER (PARTITION BY sweep_run_id ORDER BY validation_f1 DESC NULLS LAST) AS rank_in_run,
       rank() OVER (PARTITION BY sweep_run_id, model_id ORDER BY validation_f1 DESC NULLS LAST) AS rank_in_model
FROM finished;

-- The configuration to use for each model, per run: the best validation F1 (ties: cheaper run).
CREATE VIEW analytics.best_configuration_per_model AS
SELECT DISTINCT ON (sweep_run_id, model_id)
       sweep_run_id, dag_id, run_id, tier, run_started_at, model_id, is_stand_in, learning_rate, batch_size,
       num_epochs, weight_decay, gradient_accumulation_steps, validation_f1, test_f1, test_precision,
       test_recall, gpu_hours, time_to_best_seconds, experiment_key
FROM analytics.experiment_leaderboard
WHERE validation_f1 IS NOT NULL
ORDER BY sweep_run_id, model_id, validation_f1 DESC, gpu_hours ASC;

-- One line per run: how many experiments, how many failed, the best F1, and the cost.
CREATE VIEW analytics.tier_summary AS
WITH counts AS (
    SELECT sweep_run_id,
           count(*) AS experiments,
           count(*) FILTER (WHERE status = 'running') AS running,
           count(*) FILTER (WHERE stop_reason IN ('failed', 'oom', 'nan_loss')) AS failed,
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

-- GPU-hours per model and tier per run, and what early stopping saved: the steps an early-stopped
-- experiment did not run, priced at its own GPU-hours per step.
CREATE VIEW analytics.resource_usage AS
WITH per_experiment AS (
    SELECT e.sweep_run_id, e.model_id, e.tier, e.gpu_hours, e.wall_seconds, e.peak_memory_bytes,
           e.time_to_best_seconds,
           CASE WHEN e.stop_reason = 'early_stopped' AND e.steps_run > 0 AND e.steps_planned > e.steps_run
                THEN e.gpu_hours * (e.steps_planned - e.steps_run) / e.steps_run ELSE 0 END AS gpu_hours_saved
    FROM experiments e
)
SELECT r.dag_id, r.run_id, p.sweep_run_id, p.tier, p.model_id,
       count(*) AS experiments,
       sum(p.gpu_hours) AS gpu_hours,
       sum(p.gpu_hours_saved) AS gpu_hours_saved_by_early_stopping,
       CASE WHEN sum(p.gpu_hours) + sum(p.gpu_hours_saved) > 0
            THEN sum(p.gpu_hours_saved) / (sum(p.gpu_hours) + sum(p.gpu_hours_saved)) END AS early_stopping_saved_share,
       max(p.peak_memory_bytes) AS peak_memory_bytes,
       avg(p.time_to_best_seconds) AS mean_time_to_best_seconds,
       sum(p.wall_seconds) AS wall_seconds
FROM per_experiment p JOIN sweep_runs r USING (sweep_run_id)
GROUP BY r.dag_id, r.run_id, p.sweep_run_id, p.tier, p.model_id;

-- Mean and best test F1 for each value of each hyperparameter, per model, over all runs.
CREATE VIEW analytics.hyperparameter_effects AS
WITH long AS (
    SELECT model_id, 'learning_rate' AS hyperparameter, learning_rate AS value, test_f1 FROM analytics.experiment_leaderboard
    UNION ALL
    SELECT model_id, 'batch_size', batch_size, test_f1 FROM analytics.experiment_leaderboard
    UNION ALL
    SELECT model_id, 'num_epochs', num_epochs, test_f1 FROM analytics.experiment_leaderboard
    UNION ALL
    SELECT model_id, 'weight_decay', weight_decay, test_f1 FROM analytics.experiment_leaderboard
)
SELECT model_id, hyperparameter, value,
       count(test_f1) AS experiments, avg(test_f1) AS mean_test_f1, max(test_f1) AS best_test_f1,
       min(test_f1) AS worst_test_f1
FROM long
GROUP BY model_id, hyperparameter, value;

-- The best configuration's test F1 per model per run, and the change since the previous run of
-- the same tier (nightly reruns).
CREATE VIEW analytics.f1_trend_across_runs AS
SELECT tier, model_id, dag_id, run_id, run_started_at, test_f1, validation_f1, gpu_hours,
       test_f1 - lag(test_f1) OVER (PARTITION BY tier, model_id ORDER BY run_started_at) AS test_f1_change,
       lag(run_id) OVER (PARTITION BY tier, model_id ORDER BY run_started_at) AS previous_run_id
FROM analytics.best_configuration_per_model;
