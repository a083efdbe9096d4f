-- Where did the GPU-hours of the latest run of each tier go, and how much did early stopping save?
WITH latest_runs AS (
    SELECT DISTINCT ON (tier) sweep_run_id
    FROM sweep_runs
    ORDER BY tier, started_at DESC
)
SELECT tier, model_id, experiments,
       round(gpu_hours::numeric, 4) AS gpu_hours,
       round(gpu_hours_saved_by_early_stopping::numeric, 4) AS gpu_hours_saved,
       round(early_stopping_saved_share::numeric, 3) AS saved_share
FROM analytics.resource_usage
WHERE sweep_run_id IN (SELECT sweep_run_id FROM latest_runs)
ORDER BY tier, gpu_hours DESC;
