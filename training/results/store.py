"""The results store: write experiments (with their attempts and learning curves) and sweep runs
into Postgres, read a run back, and load result files the database lacks.

Writes are upserts keyed by (dag_id, run_id, experiment_key): a retried task updates its own row.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from training.results.connection import connect
from training.results.files import read_result_file
from training.results.record import COLUMNS, FAILED_VALUES, SUCCEEDED_VALUES, ExperimentResult, StoredExperiment

IDENTITY = ("dag_id", "run_id", "experiment_key")

UPSERT_EXPERIMENT = sa.text(
    f"INSERT INTO experiments (sweep_run_id, status, {', '.join(COLUMNS)}) "
    f"VALUES (:sweep_run_id, :status, {', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (dag_id, run_id, experiment_key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in IDENTITY)
    + ", status = EXCLUDED.status, recorded_at = now() "
    # Nothing recorded is downgraded: a finished, usable row is replaced only by another usable
    # result (a re-finish), never by a later attempt that failed or is merely running.
    "WHERE NOT (experiments.status = 'finished' AND experiments.stop_reason = ANY(:succeeded)) "
    "OR (EXCLUDED.status = 'finished' AND EXCLUDED.stop_reason = ANY(:succeeded)) "
    "RETURNING experiment_id"
).bindparams(sa.bindparam("versions", type_=sa.JSON), sa.bindparam("run_settings", type_=sa.JSON))

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


def upsert_experiment(connection, result: ExperimentResult, status: str = "finished") -> int | None:
    """Write the sweep run (if new) and the experiment row; return the experiment's id, or None
    when the row holds a usable result that this one (failed, or still running) must not replace."""
    sweep_run_id = connection.execute(UPSERT_SWEEP_RUN, {
        "dag_id": result.dag_id, "run_id": result.run_id, "tier": result.tier, "run_type": result.run_type,
        "plan_version": result.plan_version, "code_version": result.code_version,
        "dataset_fingerprint": result.dataset_fingerprint, "started_at": result.started_at,
    }).scalar_one()
    return connection.execute(UPSERT_EXPERIMENT, {**result.column_values(), "status": status,
                                                  "sweep_run_id": sweep_run_id,
                                                  "succeeded": SUCCEEDED_VALUES}).scalar()


def experiment_id_of(connection, result: ExperimentResult) -> int:
    return connection.execute(sa.text(
        "SELECT experiment_id FROM experiments WHERE dag_id = :dag_id AND run_id = :run_id "
        "AND experiment_key = :experiment_key"),
        {name: getattr(result, name) for name in IDENTITY}).scalar_one()


def record_experiment(url: str, result: ExperimentResult) -> bool:
    """The finished experiment: its row, its attempts and its whole learning curve, in one
    transaction. A failed result never replaces a usable one already recorded: then only the
    attempts are written (the ledger says what happened) and False is returned."""
    with connect(url, write=True) as connection:
        experiment_id = upsert_experiment(connection, result)
        kept = experiment_id is None
        if kept:
            experiment_id = experiment_id_of(connection, result)
        for point in [] if kept else result.eval_points:
            connection.execute(INSERT_POINT, {"experiment_id": experiment_id, "epoch": None, "loss": None,
                                              "elapsed_seconds": None, **point})
        connection.execute(sa.text("DELETE FROM attempts WHERE experiment_id = :id"), {"id": experiment_id})
        for attempt in result.attempts or [{"attempt": 1, "started_at": result.started_at,
                                            "seconds": result.wall_seconds or 0, "gpu_count": result.gpu_count,
                                            "outcome": result.to_dict()["stop_reason"]}]:
            connection.execute(INSERT_ATTEMPT, {
                "experiment_id": experiment_id, "attempt": attempt["attempt"],
                "started_at": attempt.get("started_at"), "seconds": attempt["seconds"],
                "gpu_seconds": attempt["seconds"] * attempt.get("gpu_count", 0),
                "resumed_from_step": attempt.get("resumed_from_step"), "last_step": attempt.get("last_step"),
                "outcome": attempt.get("outcome")})
    return not kept


def finish_sweep_run(url: str, dag_id: str, run_id: str, tier: str, run_type: str) -> str:
    """Close a sweep run: failed if any experiment failed, oom'd or diverged; return the status."""
    with connect(url, write=True) as connection:
        connection.execute(UPSERT_SWEEP_RUN, {"dag_id": dag_id, "run_id": run_id, "tier": tier,
                                              "run_type": run_type, "plan_version": None,
                                              "code_version": None, "dataset_fingerprint": None,
                                              "started_at": None})
        return connection.execute(sa.text(
            "UPDATE sweep_runs r SET finished_at = now(), status = CASE WHEN EXISTS ("
            "  SELECT FROM experiments e WHERE e.sweep_run_id = r.sweep_run_id"
            "  AND (e.stop_reason = ANY(:failed) OR e.status = 'running'))"
            " THEN 'failed' ELSE 'success' END "
            "WHERE dag_id = :dag_id AND run_id = :run_id RETURNING status"),
            {"dag_id": dag_id, "run_id": run_id, "failed": FAILED_VALUES}).scalar_one()


def run_experiments(url: str, dag_id: str, run_id: str) -> list[StoredExperiment]:
    """Every experiment of one run, in model then hyperparameter order."""
    with connect(url) as connection:
        rows = connection.execute(sa.text(
            "SELECT * FROM experiments WHERE dag_id = :dag_id AND run_id = :run_id "
            "ORDER BY model_id, learning_rate, batch_size, num_epochs, weight_decay"),
            {"dag_id": dag_id, "run_id": run_id}).mappings().all()
    return [StoredExperiment.from_row(row) for row in rows]


def sync_result_files(url: str, root: Path, warn=print) -> dict[str, int]:
    """Load every finished result.json under root that the database lacks (or holds unfinished).
    An unreadable file is named (through warn) and counted, and the sync goes on past it."""
    counts = {"loaded": 0, "present": 0, "unreadable": 0}
    with connect(url) as connection:
        finished = set(connection.execute(sa.text(
            "SELECT dag_id, run_id, experiment_key FROM experiments WHERE status = 'finished' "
            "AND artifacts_missing IS NULL")).tuples())
    for path in sorted(root.glob("**/result.json")):
        try:
            record = read_result_file(path)
            if "experiment_key" not in record or "dag_id" not in record:
                continue  # a task's copy or a foreign file, not an experiment's own result
            result = ExperimentResult.from_dict(record)
        except (ValueError, TypeError, KeyError) as error:
            warn(f"skipped {path}: {error}")
            counts["unreadable"] += 1
            continue
        if tuple(record[c] for c in IDENTITY) in finished:
            counts["present"] += 1
            continue
        record_experiment(url, result)
        finished.add(tuple(record[c] for c in IDENTITY))
        counts["loaded"] += 1
    return counts


def evaluation_curves(url: str, experiment_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
    """(step, F1) of every evaluation of these experiments, in step order."""
    if not experiment_ids:
        return {}
    with connect(url) as connection:
        rows = connection.execute(sa.text(
            "SELECT experiment_id, step, f1 FROM evaluation_points WHERE experiment_id = ANY(:ids) "
            "AND f1 IS NOT NULL ORDER BY experiment_id, step"), {"ids": list(experiment_ids)}).all()
    curves: dict[int, list] = {}
    for experiment_id, step, f1 in rows:
        curves.setdefault(experiment_id, []).append((step, f1))
    return curves


def find_succeeded(url: str, experiment_key: str, dag_id: str, run_id: str) -> StoredExperiment | None:
    """The latest successful record of this experiment key from another run, with its learning
    curve, or None. One whose checkpoint weights retention removed is not reused: it trains again."""
    with connect(url) as connection:
        row = connection.execute(sa.text(
            "SELECT * FROM experiments e WHERE experiment_key = :key AND status = 'finished' "
            "AND stop_reason = ANY(:succeeded) AND NOT (dag_id = :dag_id AND run_id = :run_id) "
            "AND NOT EXISTS (SELECT 1 FROM checkpoint_removals c WHERE c.checkpoint_path = e.checkpoint_path) "
            "ORDER BY finished_at DESC NULLS LAST LIMIT 1"),
            {"key": experiment_key, "succeeded": SUCCEEDED_VALUES, "dag_id": dag_id, "run_id": run_id},
        ).mappings().first()
        if row is None:
            return None
        curve = connection.execute(sa.text(
            "SELECT step, epoch, loss, f1, elapsed_seconds FROM evaluation_points "
            "WHERE experiment_id = :id ORDER BY step"), {"id": row["experiment_id"]}).mappings().all()
    return StoredExperiment.from_row({**dict(row), "eval_points": [dict(point) for point in curve]})
