-- 020: the chosen checkpoints exported as Hugging Face model folders with a model card
-- (training/export): where each went, the card, whether the exported folder reproduced the recorded
-- test predictions, and its CPU speed measured at export on the exporting machine (the report's
-- deployment figures). One row per experiment and destination; an export again replaces it.

CREATE TABLE exports (
    export_id                          bigserial PRIMARY KEY,
    experiment_id                      bigint NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    dag_id                             text NOT NULL,
    run_id                             text NOT NULL,
    model_id                           text NOT NULL,
    destination                        text NOT NULL,  -- a local folder or an artifact-store URL
    card                               text NOT NULL,  -- the model card (README.md) as written
    verified_rows                      integer NOT NULL CHECK (verified_rows >= 0),  -- test rows reproduced exactly
    machine                            text NOT NULL,  -- where the CPU figures were measured
    cpu_latency_batch1_ms              double precision CHECK (cpu_latency_batch1_ms > 0),
    cpu_throughput_batch32_per_second  double precision CHECK (cpu_throughput_batch32_per_second > 0),
    exported_at                        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (experiment_id, destination)
);
CREATE INDEX exports_run_idx ON exports (dag_id, run_id);

GRANT INSERT, UPDATE ON exports TO sweep_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO sweep_writer;
GRANT SELECT ON exports TO sweep_analyst, sweep_writer;
