"""Which experiments an export takes: each model's chosen configuration of one sweep run (as the
report chooses it: training/results/selection.py), or of the tier's latest successful run."""

from __future__ import annotations

import sqlalchemy as sa

from training.results.connection import connect
from training.results.record import StoredExperiment
from training.results.selection import best_of
from training.results.store import run_experiments


class ExportError(Exception):
    """Nothing to export, or an export that would not be what was measured; the message says which."""


class NothingToExport(ExportError):
    """The run has no successful experiment with a kept checkpoint (refused, or every run failed)."""


def latest_successful_run(url: str, dag_id: str) -> str:
    with connect(url) as connection:
        run_id = connection.execute(sa.text(
            "SELECT run_id FROM sweep_runs WHERE dag_id = :dag_id AND status = 'success' "
            "ORDER BY finished_at DESC NULLS LAST, sweep_run_id DESC LIMIT 1"), {"dag_id": dag_id}).scalar()
    if run_id is None:
        raise ExportError(f"{dag_id} has no successful run in the results database to export from")
    return run_id


def chosen_experiments(url: str, dag_id: str, run_id: str, models: list[str] | None = None) -> list[StoredExperiment]:
    """Each model's chosen configuration in the run (those named, or every model that has one)."""
    rows = run_experiments(url, dag_id, run_id)
    if not rows:
        raise NothingToExport(f"no experiments recorded for {dag_id} run {run_id}")
    known = sorted({r.model_id for r in rows})
    unknown = [m for m in models or [] if m not in known]
    if unknown:
        raise ExportError(f"{', '.join(unknown)}: not a model of {dag_id} run {run_id} (it has {', '.join(known)})")
    chosen = [best_of([r for r in rows if r.model_id == model_id]) for model_id in models or known]
    missing = [m for m, best in zip(models or known, chosen) if best is None or not best.checkpoint_url
               and not best.checkpoint_path]
    if missing and models:
        raise ExportError(f"{', '.join(missing)}: no successful experiment with a kept checkpoint in run {run_id}")
    return [best for best in chosen if best is not None and (best.checkpoint_url or best.checkpoint_path)]
