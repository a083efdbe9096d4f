-- Which experiments failed, ran out of memory, diverged or had invalid data, and what did they cost?
SELECT r.dag_id, r.run_id, e.model_id, e.learning_rate, e.batch_size, e.num_epochs, e.weight_decay,
       e.stop_reason, e.attempt_count, round(e.gpu_hours::numeric, 4) AS gpu_hours, e.error
FROM experiments e
JOIN sweep_runs r USING (sweep_run_id)
WHERE e.stop_reason IN ('failed', 'oom', 'nan_loss', 'invalid_data')
ORDER BY r.started_at DESC, e.model_id;
