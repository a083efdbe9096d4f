-- 002: what a run really did and cost: the per-device batch and accumulation actually used (OOM
-- back-off changes them), attempts, resume point, memory, utilisation, throughput, and the
-- fingerprints that make a result reproducible.

ALTER TABLE experiments
    ADD COLUMN per_device_batch_size        integer,
    ADD COLUMN effective_accumulation_steps integer,
    ADD COLUMN attempt_count                integer NOT NULL DEFAULT 1,
    ADD COLUMN resumed_from_step            integer,
    ADD COLUMN peak_memory_bytes            bigint,
    ADD COLUMN mean_gpu_utilization_percent double precision,
    ADD COLUMN samples_per_second           double precision,
    ADD COLUMN tokens_per_second            double precision,
    ADD COLUMN max_length                   integer,
    ADD COLUMN attention_implementation     text,
    ADD COLUMN model_revision               text,
    ADD COLUMN code_version                 text;
