-- How did each model's best test F1 change since the previous run of its tier (nightly reruns)?
-- Most recent run per model; negative changes first.
SELECT DISTINCT ON (tier, model_id)
       tier, model_id, run_id, previous_run_id,
       round(test_f1::numeric, 4) AS test_f1, round(test_f1_change::numeric, 4) AS test_f1_change
FROM analytics.f1_trend_across_runs
WHERE previous_run_id IS NOT NULL
ORDER BY tier, model_id, run_started_at DESC;
