-- 015: ties on validation F1 go to the cheaper configuration (fewer epochs) before the cheaper run,
-- as in the report (training/results/selection.py): under a step cap the 3- and 5-epoch cells can be
-- the same run, and run-time noise used to pick the 5-epoch one, which costs more without the cap.
CREATE OR REPLACE VIEW analytics.best_configuration_per_model AS
SELECT DISTINCT ON (sweep_run_id, model_id)
       sweep_run_id, dag_id, run_id, tier, run_started_at, model_id, is_stand_in, budget, dataset_fingerprint,
       learning_rate, batch_size, num_epochs, weight_decay, gradient_accumulation_steps, seed, validation_f1,
       test_f1, test_f1_ci_low, test_f1_ci_high, test_precision, test_recall, test_rows, gpu_hours,
       time_to_best_seconds, experiment_key
FROM analytics.experiment_leaderboard
WHERE validation_f1 IS NOT NULL AND NOT is_seed_confirmation
ORDER BY sweep_run_id, model_id, validation_f1 DESC, stop_reason = 'pruned' ASC, num_epochs ASC, gpu_hours ASC,
         wall_seconds ASC;
