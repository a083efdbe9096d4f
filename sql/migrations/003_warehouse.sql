-- 003: the analysts' warehouse. A sweep run per DAG run; experiments belong to it; every attempt
-- of an experiment and every evaluation (the learning curve) gets a row of its own, the latter
-- written while the experiment trains.

CREATE TABLE sweep_runs (
    sweep_run_id        bigserial PRIMARY KEY,
    dag_id              text NOT NULL,
    run_id              text NOT NULL,
    tier                text NOT NULL,
    run_type            text NOT NULL,           -- Airflow's: manual, scheduled, backfill, ...
    status              text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'failed')),
    plan_version        text,                    -- hash of the plan file the run was built from
    code_version        text,                    -- git commit of the pipeline
    dataset_fingerprint text,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    UNIQUE (dag_id, run_id)
);
CREATE INDEX sweep_runs_tier_started_at_idx ON sweep_runs (tier, started_at);

INSERT INTO sweep_runs (dag_id, run_id, tier, run_type, status, code_version, dataset_fingerprint,
                        started_at, finished_at)
SELECT dag_id, run_id, min(tier), min(run_type),
       CASE WHEN bool_and(stop_reason <> 'failed') THEN 'success' ELSE 'failed' END,
       max(code_version), max(dataset_fingerprint),
       coalesce(min(started_at), min(recorded_at)), max(finished_at)
FROM experiments
GROUP BY dag_id, run_id;

ALTER TABLE experiments ADD COLUMN sweep_run_id bigint REFERENCES sweep_runs ON DELETE CASCADE;
UPDATE experiments e SET sweep_run_id = r.sweep_run_id
FROM sweep_runs r WHERE r.dag_id = e.dag_id AND r.run_id = e.run_id;
ALTER TABLE experiments ALTER COLUMN sweep_run_id SET NOT NULL;
CREATE INDEX experiments_sweep_run_id_idx ON experiments (sweep_run_id);

-- An experiment has a row from its first evaluation on; it has no stop reason until it stops.
ALTER TABLE experiments ADD COLUMN status text NOT NULL DEFAULT 'finished'
    CHECK (status IN ('running', 'finished'));
ALTER TABLE experiments ALTER COLUMN stop_reason DROP NOT NULL;
ALTER TABLE experiments ADD CONSTRAINT experiments_finished_has_stop_reason
    CHECK (status = 'running' OR stop_reason IS NOT NULL);

CREATE TABLE attempts (
    attempt_id          bigserial PRIMARY KEY,
    experiment_id       bigint NOT NULL REFERENCES experiments ON DELETE CASCADE,
    attempt_number      integer NOT NULL CHECK (attempt_number > 0),
    started_at          timestamptz,
    seconds             double precision NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    gpu_seconds         double precision NOT NULL DEFAULT 0 CHECK (gpu_seconds >= 0),
    resumed_from_step   integer,
    last_step           integer,
    outcome             text,                    -- NULL while it runs; 'interrupted' if it was killed
    UNIQUE (experiment_id, attempt_number)
);

CREATE TABLE evaluation_points (
    experiment_id       bigint NOT NULL REFERENCES experiments ON DELETE CASCADE,
    step                integer NOT NULL CHECK (step >= 0),
    epoch               double precision,
    loss                double precision,
    f1                  double precision,
    elapsed_seconds     double precision,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, step)
);

INSERT INTO evaluation_points (experiment_id, step, epoch, loss, f1, elapsed_seconds)
SELECT e.experiment_id, (p ->> 'step')::integer, (p ->> 'epoch')::double precision,
       (p ->> 'loss')::double precision, (p ->> 'f1')::double precision,
       (p ->> 'elapsed_seconds')::double precision
FROM experiments e, jsonb_array_elements(e.eval_points) AS p
ON CONFLICT DO NOTHING;

INSERT INTO attempts (experiment_id, attempt_number, started_at, seconds, gpu_seconds, outcome)
SELECT experiment_id, 1, started_at, coalesce(wall_seconds, 0), gpu_hours * 3600, stop_reason
FROM experiments;

ALTER TABLE experiments DROP COLUMN eval_points;  -- evaluation_points is its home now
