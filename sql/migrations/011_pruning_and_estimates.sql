-- 011: spend GPU-hours only where they can change the answer.
-- Successive halving across a model's grid (stop reason 'pruned'): each experiment records the
-- samples it planned and saw, and a pruned one the rung that stopped it, its F1 there, the F1 it had
-- to reach and how many peers had reached the rung. The first task of a tier run records what it
-- estimated each experiment would cost, so the report and the views set estimate beside actual.

ALTER TABLE experiments DROP CONSTRAINT experiments_stop_reason_check;
ALTER TABLE experiments ADD CONSTRAINT experiments_stop_reason_check
    CHECK (stop_reason IN ('completed', 'early_stopped', 'pruned', 'timeout', 'oom', 'nan_loss', 'failed',
                           'invalid_data'));

ALTER TABLE experiments
    ADD COLUMN samples_planned      bigint CHECK (samples_planned >= 0),
    ADD COLUMN samples_seen         bigint CHECK (samples_seen >= 0),
    ADD COLUMN pruned_at_fraction   double precision CHECK (pruned_at_fraction > 0 AND pruned_at_fraction < 1),
    ADD COLUMN pruned_at_samples    bigint CHECK (pruned_at_samples >= 0),
    ADD COLUMN pruning_f1           double precision,
    ADD COLUMN pruning_threshold_f1 double precision,
    ADD COLUMN pruning_peers        integer CHECK (pruning_peers >= 0);

-- One row per planned experiment of a tier run (grid points; seed confirmations as one row per
-- model, their configuration being chosen later), written by the run's first task before any
-- training. hours is NULL when nothing on this deployment could price it. unit: 'GPU-hour', or
-- 'CPU-hour' where the history it comes from ran without a GPU.
CREATE TABLE gpu_hour_estimates (
    estimate_id                 bigserial PRIMARY KEY,
    dag_id                      text NOT NULL,
    run_id                      text NOT NULL,
    tier                        text NOT NULL,
    model_id                    text NOT NULL,
    kind                        text NOT NULL CHECK (kind IN ('grid', 'seed confirmation')),
    learning_rate               double precision,
    batch_size                  integer,
    num_epochs                  integer,
    weight_decay                double precision,
    gradient_accumulation_steps integer,
    runs                        integer NOT NULL DEFAULT 1 CHECK (runs >= 1),
    planned_samples             bigint,
    hours                       double precision CHECK (hours >= 0),
    low_hours                   double precision CHECK (low_hours >= 0),
    high_hours                  double precision CHECK (high_hours >= 0),
    unit                        text NOT NULL,
    basis                       text NOT NULL,      -- how it was priced, in words
    device                      text,               -- the device kind of the history it comes from
    max_gpu_hours               double precision,   -- the run's budget gate, if any
    estimated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gpu_hour_estimates_run ON gpu_hour_estimates (dag_id, run_id);

GRANT INSERT, DELETE ON gpu_hour_estimates TO sweep_writer;  -- a retried first task replaces its rows
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO sweep_writer;
GRANT SELECT ON gpu_hour_estimates TO sweep_analyst, sweep_writer;

-- The configuration to use for each model: ties on validation F1 now go to a run that was not
-- pruned (a pruned run is cheap only because it was cut short), then to the cheaper, as in the report.
CREATE OR REPLACE VIEW analytics.best_configuration_per_model AS
SELECT DISTINCT ON (sweep_run_id, model_id)
       sweep_run_id, dag_id, run_id, tier, run_started_at, model_id, is_stand_in, budget, dataset_fingerprint,
       learning_rate, batch_size, num_epochs, weight_decay, gradient_accumulation_steps, seed, validation_f1,
       test_f1, test_f1_ci_low, test_f1_ci_high, test_precision, test_recall, test_rows, gpu_hours,
       time_to_best_seconds, experiment_key
FROM analytics.experiment_leaderboard
WHERE validation_f1 IS NOT NULL AND NOT is_seed_confirmation
ORDER BY sweep_run_id, model_id, validation_f1 DESC, stop_reason = 'pruned' ASC, gpu_hours ASC, wall_seconds ASC;

-- Every pruned experiment: where it stopped, against what, and what stopping saved (at most: the
-- samples it did not train, priced at its own cost per sample; it might have stopped early anyway),
-- in GPU-hours, or CPU-hours (wall-clock) for a run without a GPU.
CREATE VIEW analytics.pruned_experiments AS
SELECT r.sweep_run_id, r.dag_id, r.run_id, r.tier, e.experiment_id, e.experiment_key, e.model_id,
       e.learning_rate, e.batch_size, e.num_epochs, e.weight_decay, e.gradient_accumulation_steps,
       e.pruned_at_fraction, e.pruned_at_samples, e.pruning_f1, e.pruning_threshold_f1, e.pruning_peers,
       e.samples_planned, e.samples_seen, e.validation_f1, e.test_f1, e.gpu_hours, e.wall_seconds,
       CASE WHEN e.gpu_count > 0 THEN 'GPU-hour' ELSE 'CPU-hour' END AS unit,
       CASE WHEN e.samples_seen > 0
            THEN (CASE WHEN e.gpu_count > 0 THEN e.gpu_hours ELSE coalesce(e.wall_seconds, 0) / 3600 END)
                 * greatest(e.samples_planned - e.samples_seen, 0) / e.samples_seen END AS hours_saved_at_most
FROM experiments e JOIN sweep_runs r USING (sweep_run_id)
WHERE e.stop_reason = 'pruned';

-- Estimate beside actual, per run and model: what the first task priced, and what the finished
-- experiments cost in the same unit (GPU-hours; CPU-hours, i.e. wall-clock hours, without a GPU).
CREATE VIEW analytics.gpu_hour_estimate_vs_actual AS
WITH estimated AS (
    SELECT dag_id, run_id, tier, model_id, min(unit) AS unit, sum(hours * runs) AS estimated_hours,
           sum(low_hours * runs) AS low_hours, sum(high_hours * runs) AS high_hours,
           count(*) FILTER (WHERE hours IS NULL) AS unpriced, max(max_gpu_hours) AS max_gpu_hours
    FROM gpu_hour_estimates GROUP BY dag_id, run_id, tier, model_id
), actual AS (
    SELECT dag_id, run_id, model_id, count(*) AS experiments,
           sum(CASE WHEN gpu_count > 0 THEN gpu_hours ELSE coalesce(wall_seconds, 0) / 3600 END) AS actual_hours
    FROM experiments WHERE status = 'finished' GROUP BY dag_id, run_id, model_id
)
SELECT s.dag_id, s.run_id, s.tier, s.model_id, s.unit, s.estimated_hours, s.low_hours, s.high_hours,
       s.unpriced, s.max_gpu_hours, a.experiments, a.actual_hours,
       CASE WHEN a.actual_hours > 0 THEN s.estimated_hours / a.actual_hours END AS estimate_over_actual
FROM estimated s LEFT JOIN actual a USING (dag_id, run_id, model_id);

GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO sweep_writer;
