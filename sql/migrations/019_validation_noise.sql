-- 019: how much noise there is where the choice is made. The best checkpoint's 95% bootstrap
-- interval of validation F1, and its per-row validation predictions (validation_predictions.parquet
-- beside test_predictions.parquet), from which the report tests whether the chosen configuration
-- is ahead of the runner-up beyond validation noise. NULL on rows from before.

ALTER TABLE experiments
    ADD COLUMN validation_f1_ci_low       double precision CHECK (validation_f1_ci_low BETWEEN 0 AND 1),
    ADD COLUMN validation_f1_ci_high      double precision CHECK (validation_f1_ci_high BETWEEN 0 AND 1),
    ADD COLUMN validation_predictions_path text;
