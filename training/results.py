"""The results store: write experiments (with their attempts and learning curves) and sweep runs
into Postgres, read a run back, and load result files the database lacks.

Writes are upserts keyed by (dag_id, run_id, experiment_key): a retried task updates its own row.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

IDENTITY = ("dag_id", "run_id", "experiment_key")
SUCCEEDED = ("completed", "early_stopped", "timeout")  # stop reasons of an experiment with a usable model
COLUMNS = (
    "dag_id", "run_id", "run_type", "experiment_key", "tier", "model_id", "model_source", "is_stand_in",
    "learning_rate", "batch_size", "num_epochs", "weight_decay", "gradient_accumulation_steps", "budget",
    "dataset_source", "dataset_fingerprint", "validation_f1", "validation_precision", "validation_recall",
    "validation_accuracy", "test_f1", "test_precision", "test_recall", "test_accuracy", "best_step",
    "steps_planned", "steps_run", "stop_reason", "device", "gpu_count", "precision", "wall_seconds",
    "gpu_hours", "time_to_best_seconds", "checkpoint_path", "versions", "error", "started_at", "finished_at",
    # 002
    "per_device_batch_size", "effective_accumulation_steps", "attempt_count", "resumed_from_step",
    "peak_memory_bytes", "mean_gpu_utilization_percent", "samples_per_second", "tokens_per_second",
    "max_length", "attention_implementation", "model_revision", "code_version",
    # 003
    "status",
    # 006
    "test_f1_ci_low", "test_f1_ci_high", "latency_batch1_ms", "throughput_batch32_per_second",
    "parameter_count", "model_size_bytes",
    # 007
    "reused_from_run_id",
)
REQUIRED = ("dag_id", "run_id", "run_type", "experiment_key", "tier", "model_id", "model_source", "is_stand_in",
            "learning_rate", "batch_size", "num_epochs", "weight_decay", "gradient_accumulation_steps", "budget",
            "dataset_source", "attempt_count")
DEFAULTS = {"gpu_count": 0, "gpu_hours": 0.0, "versions": {}, "status": "finished"}

UPSERT_EXPERIMENT = sa.text(
    f"INSERT INTO experiments (sweep_run_id, {', '.join(COLUMNS)}) "
    f"VALUES (:sweep_run_id, {', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (dag_id, run_id, experiment_key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in IDENTITY)
    + ", recorded_at = now() RETURNING experiment_id"
).bindparams(sa.bindparam("versions", type_=sa.JSON))

# A sweep run starts when its first experiment starts.
UPSERT_SWEEP_RUN = sa.text(
    "INSERT INTO sweep_runs (dag_id, run_id, tier, run_type, plan_version, code_version, dataset_fingerprint, "
    "started_at) VALUES (:dag_id, :run_id, :tier, :run_type, :plan_version, :code_version, :dataset_fingerprint, "
    "coalesce(CAST(:started_at AS timestamptz), now())) "
    "ON CONFLICT (dag_id, run_id) DO UPDATE SET "
    "started_at = least(sweep_runs.started_at, EXCLUDED.started_at), "
    "plan_version = coalesce(sweep_runs.plan_version, EXCLUDED.plan_version), "
    "code_version = coalesce(sweep_runs.code_version, EXCLUDED.code_version), "
    "dataset_fingerprint = coalesce(sweep_runs.dataset_fingerprint, EXCLUDED.dataset_fingerprint) "
    "RETURNING sweep_run_id")

INSERT_POINT = sa.text(
    "INSERT INTO evaluation_points (experiment_id, step, epoch, loss, f1, elapsed_seconds) "
    "VALUES (:experiment_id, :step, :epoch, :loss, :f1, :elapsed_seconds) "
    "ON CONFLICT (experiment_id, step) DO UPDATE SET epoch = EXCLUDED.epoch, loss = EXCLUDED.loss, "
    "f1 = EXCLUDED.f1, elapsed_seconds = EXCLUDED.elapsed_seconds")

INSERT_ATTEMPT = sa.text(
    "INSERT INTO attempts (experiment_id, attempt_number, started_at, seconds, gpu_seconds, resumed_from_step, "
    "last_step, outcome) VALUES (:experiment_id, :attempt, :started_at, :seconds, :gpu_seconds, "
    ":resumed_from_step, :last_step, :outcome)")


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


def upsert_experiment(connection, record: dict) -> int:
    """Write the sweep run (if new) and the experiment row; return the experiment's id."""
    missing = [c for c in REQUIRED if record.get(c) is None]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    sweep_run_id = connection.execute(UPSERT_SWEEP_RUN, {
        "dag_id": record["dag_id"], "run_id": record["run_id"], "tier": record["tier"],
        "run_type": record["run_type"], "plan_version": record.get("plan_version"),
        "code_version": record.get("code_version"), "dataset_fingerprint": record.get("dataset_fingerprint"),
        "started_at": record.get("started_at"),
    }).scalar_one()
    values = {c: record.get(c, DEFAULTS.get(c)) for c in COLUMNS}
    return connection.execute(UPSERT_EXPERIMENT, {**values, "sweep_run_id": sweep_run_id}).scalar_one()


def record_experiment(url: str, record: dict) -> None:
    """The finished experiment: its row, its attempts and its whole learning curve, in one transaction."""
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            experiment_id = upsert_experiment(connection, {**record, "status": "finished"})
            for point in record.get("eval_points", []):
                connection.execute(INSERT_POINT, {"experiment_id": experiment_id, "epoch": None, "loss": None,
                                                  "elapsed_seconds": None, **point})
            connection.execute(sa.text("DELETE FROM attempts WHERE experiment_id = :id"), {"id": experiment_id})
            for attempt in record.get("attempts") or [{"attempt": 1, "started_at": record.get("started_at"),
                                                       "seconds": record.get("wall_seconds") or 0,
                                                       "gpu_count": record.get("gpu_count", 0),
                                                       "outcome": record.get("stop_reason")}]:
                connection.execute(INSERT_ATTEMPT, {
                    "experiment_id": experiment_id, "attempt": attempt["attempt"],
                    "started_at": attempt.get("started_at"), "seconds": attempt["seconds"],
                    "gpu_seconds": attempt["seconds"] * attempt.get("gpu_count", 0),
                    "resumed_from_step": attempt.get("resumed_from_step"), "last_step": attempt.get("last_step"),
                    "outcome": attempt.get("outcome")})
    finally:
        engine.dispose()


def finish_sweep_run(url: str, dag_id: str, run_id: str, tier: str, run_type: str) -> str:
    """Close a sweep run: failed if any experiment failed, oom'd or diverged; return the status."""
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            connection.execute(UPSERT_SWEEP_RUN, {"dag_id": dag_id, "run_id": run_id, "tier": tier,
                                                  "run_type": run_type, "plan_version": None,
                                                  "code_version": None, "dataset_fingerprint": None,
                                                  "started_at": None})
            return connection.execute(sa.text(
                "UPDATE sweep_runs r SET finished_at = now(), status = CASE WHEN EXISTS ("
                "  SELECT FROM experiments e WHERE e.sweep_run_id = r.sweep_run_id"
                "  AND (e.stop_reason IN ('failed', 'oom', 'nan_loss') OR e.status = 'running'))"
                " THEN 'failed' ELSE 'success' END "
                "WHERE dag_id = :dag_id AND run_id = :run_id RETURNING status"),
                {"dag_id": dag_id, "run_id": run_id}).scalar_one()
    finally:
        engine.dispose()


def run_experiments(url: str, dag_id: str, run_id: str) -> list[dict]:
    """Every experiment of one run, as dicts, in model then hyperparameter order."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT * FROM experiments WHERE dag_id = :dag_id AND run_id = :run_id "
                "ORDER BY model_id, learning_rate, batch_size, num_epochs, weight_decay"),
                {"dag_id": dag_id, "run_id": run_id}).mappings().all()
    finally:
        engine.dispose()
    return [dict(row) for row in rows]


def sync_result_files(url: str, root: Path) -> dict[str, int]:
    """Load every finished result.json under root that the database lacks (or holds unfinished)."""
    counts = {"loaded": 0, "present": 0}
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            finished = set(connection.execute(sa.text(
                "SELECT dag_id, run_id, experiment_key FROM experiments WHERE status = 'finished'")).tuples())
    finally:
        engine.dispose()
    for path in sorted(root.glob("**/result.json")):
        record = json.loads(path.read_text())
        if "experiment_key" not in record or "dag_id" not in record:
            continue  # a task's copy or a foreign file, not an experiment's own result
        if tuple(record[c] for c in IDENTITY) in finished:
            counts["present"] += 1
            continue
        record_experiment(url, record)
        finished.add(tuple(record[c] for c in IDENTITY))
        counts["loaded"] += 1
    return counts


def evaluation_curves(url: str, experiment_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
    """(step, F1) of every evaluation of these experiments, in step order."""
    if not experiment_ids:
        return {}
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT experiment_id, step, f1 FROM evaluation_points WHERE experiment_id = ANY(:ids) "
                "AND f1 IS NOT NULL ORDER BY experiment_id, step"), {"ids": list(experiment_ids)}).all()
    finally:
        engine.dispose()
    curves: dict[int, list] = {}
    for experiment_id, step, f1 in rows:
        curves.setdefault(experiment_id, []).append((step, f1))
    return curves


def previous_run_id(url: str, dag_id: str, run_id: str) -> str | None:
    """The run of the same DAG (tier) that started last before this one."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT p.run_id FROM sweep_runs p JOIN sweep_runs r ON r.dag_id = p.dag_id "
                "WHERE r.dag_id = :dag_id AND r.run_id = :run_id AND p.started_at < r.started_at "
                "ORDER BY p.started_at DESC LIMIT 1"), {"dag_id": dag_id, "run_id": run_id}).scalar()
    finally:
        engine.dispose()


def find_succeeded(url: str, experiment_key: str, dag_id: str, run_id: str) -> dict | None:
    """The latest successful record of this experiment key from another run, with its learning
    curve, or None."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT * FROM experiments WHERE experiment_key = :key AND status = 'finished' "
                "AND stop_reason = ANY(:succeeded) AND NOT (dag_id = :dag_id AND run_id = :run_id) "
                "ORDER BY finished_at DESC NULLS LAST LIMIT 1"),
                {"key": experiment_key, "succeeded": list(SUCCEEDED), "dag_id": dag_id, "run_id": run_id},
            ).mappings().first()
            if row is None:
                return None
            curve = connection.execute(sa.text(
                "SELECT step, epoch, loss, f1, elapsed_seconds FROM evaluation_points "
                "WHERE experiment_id = :id ORDER BY step"), {"id": row["experiment_id"]}).mappings().all()
    finally:
        engine.dispose()
    return {**dict(row), "eval_points": [dict(point) for point in curve]}
