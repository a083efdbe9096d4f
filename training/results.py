"""The results store: write one experiment's record into Postgres, read a run's records back.

Writes are upserts keyed by (dag_id, run_id, experiment_key): a retried task updates its own row.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

COLUMNS = (
    "dag_id", "run_id", "run_type", "experiment_key", "tier", "model_id", "model_source", "is_stand_in",
    "learning_rate", "batch_size", "num_epochs", "weight_decay", "gradient_accumulation_steps", "budget",
    "dataset_source", "dataset_fingerprint", "validation_f1", "validation_precision", "validation_recall",
    "validation_accuracy", "test_f1", "test_precision", "test_recall", "test_accuracy", "best_step",
    "steps_planned", "steps_run", "stop_reason", "device", "gpu_count", "precision", "wall_seconds",
    "gpu_hours", "time_to_best_seconds", "checkpoint_path", "eval_points", "versions", "error",
    "started_at", "finished_at",
    # 002
    "per_device_batch_size", "effective_accumulation_steps", "attempt_count", "resumed_from_step",
    "peak_memory_bytes", "mean_gpu_utilization_percent", "samples_per_second", "tokens_per_second",
    "max_length", "attention_implementation", "model_revision", "code_version",
)
# A failed run has no measurements: these may be absent from its record and are stored as NULL.
OPTIONAL_COLUMNS = frozenset(COLUMNS[COLUMNS.index("validation_f1"):COLUMNS.index("stop_reason")]) | {
    "device", "precision", "time_to_best_seconds", "checkpoint_path", *COLUMNS[COLUMNS.index("per_device_batch_size"):]
} - {"attempt_count"}
JSON_COLUMNS = ("eval_points", "versions")

UPSERT = sa.text(
    f"INSERT INTO experiments ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (dag_id, run_id, experiment_key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in ("dag_id", "run_id", "experiment_key"))
    + ", recorded_at = now()"
).bindparams(*(sa.bindparam(c, type_=JSONB) for c in JSON_COLUMNS))


def record_experiment(url: str, result: dict) -> None:
    missing = [c for c in COLUMNS if c not in result and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(UPSERT, {c: result.get(c) for c in COLUMNS})
    finally:
        engine.dispose()


def run_experiments(url: str, dag_id: str, run_id: str) -> list[dict]:
    """Every experiment of one run, as dicts, in model then hyperparameter order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT * FROM experiments WHERE dag_id = :dag_id AND run_id = :run_id "
                "ORDER BY model_id, learning_rate, batch_size, num_epochs, weight_decay"),
                {"dag_id": dag_id, "run_id": run_id}).mappings().all()
    finally:
        engine.dispose()
    return [dict(row) for row in rows]
