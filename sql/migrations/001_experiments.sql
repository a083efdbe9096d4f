-- 001: one row per experiment of a sweep run: what was trained, how it scored, what it cost.
-- Released migrations are never edited; change the schema with a new numbered file.

CREATE TABLE experiments (
    experiment_id               bigserial PRIMARY KEY,
    dag_id                      text NOT NULL,
    run_id                      text NOT NULL,
    run_type                    text NOT NULL,
    experiment_key              text NOT NULL,
    tier                        text NOT NULL,
    model_id                    text NOT NULL,
    model_source                text NOT NULL,
    is_stand_in                 boolean NOT NULL,
    learning_rate               double precision NOT NULL CHECK (learning_rate > 0),
    batch_size                  integer NOT NULL CHECK (batch_size > 0),
    num_epochs                  integer NOT NULL CHECK (num_epochs > 0),
    weight_decay                double precision NOT NULL CHECK (weight_decay >= 0),
    gradient_accumulation_steps integer NOT NULL CHECK (gradient_accumulation_steps > 0),
    budget                      text NOT NULL,
    dataset_source              text NOT NULL,
    dataset_fingerprint         text,
    validation_f1               double precision,
    validation_precision        double precision,
    validation_recall           double precision,
    validation_accuracy         double precision,
    test_f1                     double precision,
    test_precision              double precision,
    test_recall                 double precision,
    test_accuracy               double precision,
    best_step                   integer,
    steps_planned               integer,
    steps_run                   integer,
    stop_reason                 text NOT NULL
        CHECK (stop_reason IN ('completed', 'early_stopped', 'oom', 'nan_loss', 'timeout', 'failed')),
    device                      text,
    gpu_count                   integer NOT NULL DEFAULT 0,
    precision                   text,
    wall_seconds                double precision,
    gpu_hours                   double precision NOT NULL DEFAULT 0,
    time_to_best_seconds        double precision,
    checkpoint_path             text,
    eval_points                 jsonb NOT NULL DEFAULT '[]',
    versions                    jsonb NOT NULL DEFAULT '{}',
    error                       text,
    started_at                  timestamptz,
    finished_at                 timestamptz,
    recorded_at                 timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dag_id, run_id, experiment_key)
);

CREATE INDEX experiments_model_id_idx ON experiments (model_id);
CREATE INDEX experiments_recorded_at_idx ON experiments (recorded_at);
