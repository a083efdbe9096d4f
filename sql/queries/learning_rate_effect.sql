-- Which learning rate gives each model the best mean validation F1, over every run so far on the
-- same data and budget (stand-ins apart)? Validation, because this is a choice; pooled only
-- within one dataset fingerprint, budget and model kind.
SELECT DISTINCT ON (model_id, dataset_fingerprint, budget, is_stand_in)
       model_id, dataset_fingerprint, budget, is_stand_in, value AS learning_rate, experiments,
       round(mean_validation_f1::numeric, 4) AS mean_validation_f1
FROM analytics.hyperparameter_effects
WHERE hyperparameter = 'learning_rate' AND mean_validation_f1 IS NOT NULL
ORDER BY model_id, dataset_fingerprint, budget, is_stand_in, mean_validation_f1 DESC;
