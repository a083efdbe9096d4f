-- Which configuration should each model use, according to the latest run of its tier?
-- Chosen by validation F1; test F1 (with its 95% interval, on test_rows rows) is the score to quote.
WITH latest_runs AS (
    SELECT DISTINCT ON (tier) sweep_run_id
    FROM sweep_runs
    ORDER BY tier, started_at DESC
)
SELECT tier, model_id, learning_rate, batch_size, num_epochs, weight_decay,
       round(validation_f1::numeric, 4) AS validation_f1, round(test_f1::numeric, 4) AS test_f1,
       round(test_f1_ci_low::numeric, 4) AS test_f1_ci_low, round(test_f1_ci_high::numeric, 4) AS test_f1_ci_high,
       test_rows, run_id
FROM analytics.best_configuration_per_model
WHERE sweep_run_id IN (SELECT sweep_run_id FROM latest_runs)
ORDER BY tier, validation_f1 DESC;
