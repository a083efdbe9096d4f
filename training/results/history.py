"""What the results database remembers for the sweep's own decisions: past runs' costs on this
device (to price a run before it starts), the estimate recorded per run (for its report), and
the peers' validation F1 at each evaluation (for successive halving). The queries live here; the
pricing (estimates.py) and the pruning callback (engine/pruning.py) are plain Python over them."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from training.plan import GRID_FIELDS
from training.results.connection import connect
from training.results.record import SUCCEEDED_VALUES

HISTORY = sa.text(
    "SELECT model_id, learning_rate, batch_size, num_epochs, weight_decay, gradient_accumulation_steps, device, "
    "gpu_count, gpu_hours, wall_seconds, samples_planned, samples_seen, steps_planned, steps_run, train_rows, "
    "parameter_count, stop_reason, finished_at FROM experiments "
    "WHERE status = 'finished' AND stop_reason = ANY(:succeeded) "
    "AND reused_from_run_id IS NULL AND wall_seconds > 0 AND dataset_source = :dataset AND budget = :budget "
    "AND confirmation_of IS NULL ORDER BY finished_at DESC NULLS LAST")
LATEST_DEVICE = sa.text("SELECT device FROM experiments WHERE status = 'finished' AND device IS NOT NULL "
                        "ORDER BY finished_at DESC NULLS LAST LIMIT 1")
PARAMETER_COUNTS = sa.text("SELECT DISTINCT ON (model_id) model_id, parameter_count FROM experiments "
                           "WHERE parameter_count IS NOT NULL ORDER BY model_id, finished_at DESC NULLS LAST")
PEER_POINTS = sa.text(
    "SELECT e.experiment_key, e.learning_rate, e.batch_size, e.gradient_accumulation_steps, e.num_epochs, "
    "e.stop_reason = 'pruned' AS pruned, p.step, p.f1, p.loss "
    "FROM experiments e JOIN evaluation_points p USING (experiment_id) "
    "WHERE e.dag_id = :dag_id AND e.run_id = :run_id AND e.model_id = :model_id AND e.confirmation_of IS NULL "
    "AND e.experiment_key <> :own_key AND p.f1 IS NOT NULL ORDER BY e.experiment_id, p.step")
INSERT_ESTIMATE = sa.text(
    "INSERT INTO gpu_hour_estimates (dag_id, run_id, tier, model_id, kind, learning_rate, batch_size, "
    "num_epochs, weight_decay, gradient_accumulation_steps, runs, planned_samples, hours, low_hours, "
    "high_hours, unit, basis, device, max_gpu_hours) VALUES (:dag_id, :run_id, :tier, :model_id, "
    ":kind, :learning_rate, :batch_size, :num_epochs, :weight_decay, :gradient_accumulation_steps, "
    ":runs, :planned_samples, :hours, :low, :high, :unit, :basis, :device, :max_gpu_hours)")


@dataclass
class History:
    """Past successful runs on the same dataset and budget, on the device kind of the latest run."""

    rows: list[dict]
    device: str | None
    unit: str  # "GPU-hour", or "CPU-hour" where the history ran without a GPU
    parameters: dict[str, int] = field(default_factory=dict)


def read_history(url: str, dataset: str, budget: str) -> History:
    with connect(url) as connection:
        device = connection.execute(LATEST_DEVICE).scalar()
        rows = [dict(row) for row in connection.execute(HISTORY, {
            "dataset": dataset, "budget": budget, "succeeded": SUCCEEDED_VALUES}).mappings()]
        parameters = dict(connection.execute(PARAMETER_COUNTS).all())
    rows = [row for row in rows if row["device"] == device]
    unit = "GPU-hour" if any(row["gpu_count"] for row in rows) else "CPU-hour"
    return History(rows, device, unit, parameters)


def record_estimate(url: str, dag_id: str, run_id: str, estimate) -> None:
    """Replace this run's estimate rows (a retried first task writes them again)."""
    with connect(url, write=True) as connection:
        connection.execute(sa.text("DELETE FROM gpu_hour_estimates WHERE dag_id = :dag_id AND run_id = :run_id"),
                           {"dag_id": dag_id, "run_id": run_id})
        for e in estimate.estimates:
            hp = e.hyperparameters.as_dict() if e.hyperparameters else dict.fromkeys(GRID_FIELDS)
            connection.execute(INSERT_ESTIMATE, {
                "dag_id": dag_id, "run_id": run_id, "tier": estimate.tier, "model_id": e.model_id, "kind": e.kind,
                **hp, "runs": e.runs, "planned_samples": e.planned_samples, "hours": e.hours, "low": e.low,
                "high": e.high, "unit": estimate.unit, "basis": e.basis, "device": estimate.device,
                "max_gpu_hours": estimate.max_gpu_hours})


def run_estimate(url: str, dag_id: str, run_id: str) -> list[dict]:
    """The recorded estimate rows of one run (for the report)."""
    with connect(url) as connection:
        return [dict(row) for row in connection.execute(sa.text(
            "SELECT * FROM gpu_hour_estimates WHERE dag_id = :dag_id AND run_id = :run_id ORDER BY estimate_id"),
            {"dag_id": dag_id, "run_id": run_id}).mappings()]


@dataclass
class Peer:
    """One of the model's other grid runs in this sweep run, as far as it has got."""

    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    num_epochs: int
    pruned: bool
    points: list = field(default_factory=list)  # (samples seen, F1, loss) at each evaluation


def peer_points(url: str, dag_id: str, run_id: str, model_id: str, own_key: str) -> dict[str, Peer]:
    """The model's other grid runs in this sweep run, in the order they started, with their
    evaluations so far."""
    with connect(url) as connection:
        rows = connection.execute(PEER_POINTS, {"dag_id": dag_id, "run_id": run_id, "model_id": model_id,
                                                "own_key": own_key}).all()
    peers: dict[str, Peer] = {}
    for key, rate, batch, accumulation, epochs, pruned, step, f1, loss in rows:
        peer = peers.setdefault(key, Peer(rate, batch, accumulation, epochs, bool(pruned)))
        peer.points.append((step * batch * accumulation, f1, loss))
    return peers
