-- 006: what production needs to know about each best checkpoint: a 95% bootstrap interval of its
-- test F1, its speed on the device it trained on, and its size.

ALTER TABLE experiments
    ADD COLUMN test_f1_ci_low                  double precision,
    ADD COLUMN test_f1_ci_high                 double precision,
    ADD COLUMN latency_batch1_ms               double precision,
    ADD COLUMN throughput_batch32_per_second   double precision,
    ADD COLUMN parameter_count                 bigint,
    ADD COLUMN model_size_bytes                bigint;
