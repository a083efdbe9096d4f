-- 010: choose on validation, report on test, compare like with like (decision 17).
-- Each experiment records its seed, which grid experiment a seed-confirmation run repeats, where
-- its per-row test predictions are, and how many held-out rows duplicate training rows. The views
-- that compare or pool experiments now do so only within one dataset fingerprint, budget and
-- model kind (stand-in or real), choose by validation F1, and leave seed-confirmation runs out of
-- every choice.

ALTER TABLE experiments
    ADD COLUMN seed                                integer CHECK (seed >= 0),
    ADD COLUMN confirmation_of                     text,     -- experiment_key of the grid run it repeats
    ADD COLUMN predictions_path                    text,     -- Parquet: row_id, label, predicted_label, ...
    ADD COLUMN validation_duplicates_of_train      integer CHECK (validation_duplicates_of_train >= 0),
    ADD COLUMN test_duplicates_of_train            integer CHECK (test_duplicates_of_train >= 0),
    ADD COLUMN validation_rows_sharing_train_text  integer CHECK (validation_rows_sharing_train_text >= 0),
    ADD COLUMN test_rows_sharing_train_text        integer CHECK (test_rows_sharing_train_text >= 0);

DROP VIEW analytics.experiment_leaderboard CASCADE;  -- and the views built on it, recreated below
DROP VIEW analytics.tier_summary;

-- Every finished experiment of every run, ranked by validation F1 within its run and its model.
-- Seed-confirmation runs are listed (is_seed_confirmation) but not ranked.
CREATE VIEW analytics.experiment_leaderboard AS
WITH finished AS (
    SELECT r.sweep_run_id, r.dag_id, r.run_id, r.tier, r.run_type, r.started_at AS run_started_at,
           e.experiment_id, e.experiment_key, e.model_id, e.is_stand_in, e.budget, e.dataset_source,
           e.dataset_fingerprint, e.learning_rate, e.batch_size, e.num_epochs, e.weight_decay,
           e.gradient_accumulation_steps, e.seed, e.confirmation_of IS NOT NULL AS is_seed_confirmation,
           e.confirmation_of, e.validation_f1, e.test_f1, e.test_f1_ci_low, e.test_f1_ci_high,
           e.test_precision, e.test_recall, e.test_accuracy, e.validation_rows, e.test_rows, e.stop_reason,
           e.best_step, e.steps_run, e.gpu_hours, e.wall_seconds, e.time_to_best_seconds
    FROM experiments e JOIN sweep_runs r USING (sweep_run_id)
    WHERE e.status = 'finished'
)
SELECT *,
       CASE WHEN NOT is_seed_confirmation THEN rank() OVER (
           PARTITION BY sweep_run_id, is_seed_confirmation ORDER BY validation_f1 DESC NULLS LAST) END AS rank_in_run,
       CASE WHEN NOT is_seed_confirmation THEN rank() OVER (
           PARTITION BY sweep_run_id, model_id, is_seed_confirmation ORDER BY validation_f1 DESC NULLS LAST)
       END AS rank_in_model
FROM finished;

-- The configuration to use for each model, per run: the best validation F1 among the grid's runs
-- (ties: the cheaper run, as the report breaks them). test_f1 and its interval are the figure to
-- quote for it.
CREATE VIEW analytics.best_configuration_per_model AS
SELECT DISTINCT ON (sweep_run_id, model_id)
       sweep_run_id, dag_id, run_id, tier, run_started_at, model_id, is_stand_in, budget, dataset_fingerprint,
       learning_rate, batch_size, num_epochs, weight_decay, gradient_accumulation_steps, seed, validation_f1,
       test_f1, test_f1_ci_low, test_f1_ci_high, test_precision, test_recall, test_rows, gpu_hours,
       time_to_best_seconds, experiment_key
FROM analytics.experiment_leaderboard
WHERE validation_f1 IS NOT NULL AND NOT is_seed_confirmation
ORDER BY sweep_run_id, model_id, validation_f1 DESC, gpu_hours ASC, wall_seconds ASC;

-- One line per run: how many experiments, how many failed, the best validation F1 and the test F1
-- of the experiment that has it (never the highest test F1, which would be choosing on test), and
-- the cost.
CREATE VIEW analytics.tier_summary AS
WITH counts AS (
    SELECT sweep_run_id,
           count(*) AS experiments,
           count(*) FILTER (WHERE status = 'running') AS running,
           count(*) FILTER (WHERE stop_reason IN ('failed', 'oom', 'nan_loss', 'invalid_data')) AS failed,
           count(*) FILTER (WHERE stop_reason = 'early_stopped') AS early_stopped,
           sum(gpu_hours) AS gpu_hours,
           sum(wall_seconds) AS wall_seconds
    FROM experiments
    GROUP BY sweep_run_id
), best AS (
    SELECT DISTINCT ON (sweep_run_id) sweep_run_id, validation_f1 AS best_validation_f1,
           test_f1 AS test_f1_of_best, model_id AS best_model_id
    FROM analytics.best_configuration_per_model
    ORDER BY sweep_run_id, validation_f1 DESC, gpu_hours ASC
)
SELECT r.sweep_run_id, r.dag_id, r.run_id, r.tier, r.run_type, r.status, r.started_at, r.finished_at,
       coalesce(c.experiments, 0) AS experiments, coalesce(c.running, 0) AS running,
       coalesce(c.failed, 0) AS failed, coalesce(c.early_stopped, 0) AS early_stopped,
       b.best_model_id, b.best_validation_f1, b.test_f1_of_best,
       coalesce(c.gpu_hours, 0) AS gpu_hours, coalesce(c.wall_seconds, 0) AS wall_seconds
FROM sweep_runs r LEFT JOIN counts c USING (sweep_run_id) LEFT JOIN best b USING (sweep_run_id);

-- Mean, best and worst validation F1 for each value of each hyperparameter, per model, over all
-- runs on the same data, budget and model kind: pooling them would mix unlike results.
CREATE VIEW analytics.hyperparameter_effects AS
WITH grid AS (
    SELECT * FROM analytics.experiment_leaderboard WHERE NOT is_seed_confirmation
), long AS (
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, 'learning_rate' AS hyperparameter,
           learning_rate AS value, validation_f1 FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, 'batch_size', batch_size, validation_f1 FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, 'num_epochs', num_epochs, validation_f1 FROM grid
    UNION ALL
    SELECT model_id, dataset_fingerprint, budget, is_stand_in, 'weight_decay', weight_decay, validation_f1 FROM grid
)
SELECT model_id, dataset_fingerprint, budget, is_stand_in, hyperparameter, value,
       count(validation_f1) AS experiments, avg(validation_f1) AS mean_validation_f1,
       max(validation_f1) AS best_validation_f1, min(validation_f1) AS worst_validation_f1
FROM long
GROUP BY model_id, dataset_fingerprint, budget, is_stand_in, hyperparameter, value;

-- The chosen configuration's F1 per model per run, and the change since the previous run of the
-- same tier on the same data, budget and model kind (nightly reruns). A run on other data starts
-- a trend of its own.
CREATE VIEW analytics.f1_trend_across_runs AS
SELECT tier, model_id, dataset_fingerprint, budget, is_stand_in, dag_id, run_id, run_started_at,
       validation_f1, test_f1, test_f1_ci_low, test_f1_ci_high, gpu_hours,
       validation_f1 - lag(validation_f1) OVER w AS validation_f1_change,
       test_f1 - lag(test_f1) OVER w AS test_f1_change,
       lag(run_id) OVER w AS previous_run_id
FROM analytics.best_configuration_per_model
WINDOW w AS (PARTITION BY tier, model_id, dataset_fingerprint, budget, is_stand_in ORDER BY run_started_at);

-- Seed confirmation (plan setting confirm_seeds): per run and model, the configuration the reruns
-- repeat, over its grid run and every rerun with another seed.
CREATE VIEW analytics.seed_confirmations AS
WITH confirmed AS (
    SELECT DISTINCT sweep_run_id, model_id, confirmation_of AS experiment_key
    FROM analytics.experiment_leaderboard
    WHERE is_seed_confirmation
), runs AS (
    SELECT c.sweep_run_id, c.model_id, c.experiment_key, l.seed, l.validation_f1, l.test_f1
    FROM confirmed c JOIN analytics.experiment_leaderboard l
      ON l.sweep_run_id = c.sweep_run_id
     AND (l.experiment_key = c.experiment_key OR l.confirmation_of = c.experiment_key)
    WHERE l.validation_f1 IS NOT NULL
)
SELECT sweep_run_id, model_id, experiment_key, count(*) AS seeds, array_agg(seed ORDER BY seed) AS seed_values,
       avg(validation_f1) AS mean_validation_f1, stddev_samp(validation_f1) AS sd_validation_f1,
       avg(test_f1) AS mean_test_f1, stddev_samp(test_f1) AS sd_test_f1
FROM runs
GROUP BY sweep_run_id, model_id, experiment_key;

GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO sweep_writer;
