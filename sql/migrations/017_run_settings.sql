-- 017: what a run's results depend on beyond the model and its grid point (training/spec.py
-- run_settings: budget and its caps, step cap, seed, evaluation cadence, early stopping, precision,
-- learning-rate scale, pruning, compile, the dataset's columns), so the report compares a run only
-- with an earlier one equal on all of them (and on the data fingerprint and stand-in or real
-- models, columns already), and names what differs when none is. NULL on rows from before.

ALTER TABLE experiments
    ADD COLUMN run_settings jsonb;

-- The trend view compares a run with the previous one equal in these settings too (rows from
-- before this migration, with NULL settings, compare among themselves as before).
CREATE OR REPLACE VIEW analytics.f1_trend_across_runs AS
SELECT b.tier, b.model_id, b.dataset_fingerprint, b.budget, b.is_stand_in, b.dag_id, b.run_id, b.run_started_at,
       b.validation_f1, b.test_f1, b.test_f1_ci_low, b.test_f1_ci_high, b.gpu_hours,
       b.validation_f1 - lag(b.validation_f1) OVER w AS validation_f1_change,
       b.test_f1 - lag(b.test_f1) OVER w AS test_f1_change,
       lag(b.run_id) OVER w AS previous_run_id,
       e.run_settings
FROM analytics.best_configuration_per_model b
JOIN experiments e ON e.sweep_run_id = b.sweep_run_id AND e.experiment_key = b.experiment_key
WINDOW w AS (PARTITION BY b.tier, b.model_id, b.dataset_fingerprint, b.budget, b.is_stand_in, e.run_settings
             ORDER BY b.run_started_at);

-- Hyperparameter effects are not pooled across run settings either (a 40-step smoke run's F1 is
-- not evidence about a learning rate's effect on the full run).
DROP VIEW analytics.hyperparameter_effects;
CREATE VIEW analytics.hyperparameter_effects AS
WITH grid AS (
    SELECT l.*, e.run_settings FROM analytics.experiment_leaderboard l JOIN experiments e USING (experiment_id)
    WHERE NOT l.is_seed_confirmation
), long AS (
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, run_settings, 'learning_rate' AS hyperparameter,
           learning_rate AS value, validation_f1 FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, run_settings, 'batch_size', batch_size, validation_f1
    FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, run_settings, 'num_epochs', num_epochs, validation_f1
    FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, run_settings, 'weight_decay', weight_decay,
           validation_f1 FROM grid
)
SELECT model_id, dataset_fingerprint, budget, is_stand_in, hyperparameter, value,
       count(validation_f1) AS experiments, avg(validation_f1) AS mean_validation_f1,
       max(validation_f1) AS best_validation_f1, min(validation_f1) AS worst_validation_f1, run_settings
FROM long
GROUP BY model_id, dataset_fingerprint, budget, is_stand_in, run_settings, hyperparameter, value;

GRANT SELECT ON analytics.hyperparameter_effects TO sweep_writer, sweep_analyst;
