-- 021: best checkpoints whose weights `python -m training prune-checkpoints` removed (retention: a
-- nightly sweep writes one per experiment, 3 GB for CodeT5-large, and nothing else removes them).
-- The experiment's row, learning curve, predictions and report stay; only the weights are gone.
-- One row per experiment; checkpoint_url is the store copy's folder, bytes what its weights held.

CREATE TABLE checkpoint_removals (
    experiment_id    bigint PRIMARY KEY REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    checkpoint_path  text NOT NULL,
    checkpoint_url   text,
    bytes            bigint CHECK (bytes >= 0),
    keep_runs        integer NOT NULL CHECK (keep_runs >= 1),
    removed_at       timestamptz NOT NULL DEFAULT now()
);

GRANT INSERT ON checkpoint_removals TO sweep_writer;
GRANT SELECT ON checkpoint_removals TO sweep_analyst, sweep_writer;
