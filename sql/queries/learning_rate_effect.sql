-- Which learning rate gives each model the best mean test F1, over every run so far?
SELECT DISTINCT ON (model_id)
       model_id, value AS learning_rate, experiments, round(mean_test_f1::numeric, 4) AS mean_test_f1
FROM analytics.hyperparameter_effects
WHERE hyperparameter = 'learning_rate' AND mean_test_f1 IS NOT NULL
ORDER BY model_id, mean_test_f1 DESC;
