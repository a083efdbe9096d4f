-- How did each model's chosen configuration change since the previous comparable run of its tier
-- (same data, budget and model kind)? Most recent run per series; the chosen configuration's
-- validation F1, and its test F1 as the reported figure.
SELECT DISTINCT ON (tier, model_id, dataset_fingerprint, budget, is_stand_in)
       tier, model_id, dataset_fingerprint, budget, run_id, previous_run_id,
       round(validation_f1::numeric, 4) AS validation_f1, round(validation_f1_change::numeric, 4) AS validation_f1_change,
       round(test_f1::numeric, 4) AS test_f1, round(test_f1_change::numeric, 4) AS test_f1_change
FROM analytics.f1_trend_across_runs
WHERE previous_run_id IS NOT NULL
ORDER BY tier, model_id, dataset_fingerprint, budget, is_stand_in, run_started_at DESC;
