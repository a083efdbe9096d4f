"""Which earlier run a run's report compares with: the last successful run of the same DAG that
started before it and is equal on everything its results depend on beyond the model and the grid
point (the run settings recorded on each row: budget and its caps, step cap, seed, evaluation
cadence, pruning, ...; the data fingerprint; stand-in or real models). When none is, the report
says which of these the nearest earlier run differs in, instead of printing a change that
compares a 40-step smoke run with a 90-step one."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from training.results.connection import connect

# What a difference is called in the report.
NAMES = {"max_steps": "step cap", "seed": "seed", "budget": "budget", "dataset_fingerprint": "data (fingerprint)",
         "is_stand_in": "stand-in or real models", "pruning": "pruning", "max_train_samples": "training rows",
         "max_eval_samples": "validation rows", "max_test_samples": "test rows", "max_length": "max length",
         "eval_steps": "evaluation cadence", "logging_steps": "logging cadence",
         "early_stopping_patience": "early-stopping patience", "early_stopping_min_delta": "early-stopping delta",
         "mixed_precision": "mixed precision", "pin_memory": "pinned memory", "max_train_seconds": "time cap",
         "learning_rate_scale": "learning-rate scale", "compile": "compile", "dataset": "dataset columns"}

RUNS = sa.text(
    "SELECT r.run_id, r.started_at, r.status, e.budget, e.dataset_fingerprint, e.is_stand_in, e.run_settings "
    "FROM sweep_runs r JOIN experiments e ON e.sweep_run_id = r.sweep_run_id "
    "WHERE r.dag_id = :dag_id AND e.confirmation_of IS NULL "
    "AND (r.run_id = :run_id OR (r.status = 'success' AND r.started_at < "
    "     (SELECT started_at FROM sweep_runs WHERE dag_id = :dag_id AND run_id = :run_id))) "
    "ORDER BY r.started_at DESC")


@dataclass(frozen=True)
class Comparison:
    run_id: str | None  # the run compared with; None: none is comparable
    note: str | None  # why none is (what the nearest earlier run differs in); None when one is, or none exists


def signature(row: dict) -> dict:
    """Everything a run's results depend on beyond the model and the grid point, flat."""
    settings = row["run_settings"] or {}
    return {**{k: v for k, v in settings.items() if k != "budget"}, "budget": row["budget"],
            "dataset_fingerprint": row["dataset_fingerprint"], "is_stand_in": row["is_stand_in"],
            "run_settings_recorded": row["run_settings"] is not None}


def describe(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {describe(v)}" for k, v in sorted(value.items()))
    return str(value)


def differences(here: dict, there: dict) -> list[str]:
    if here["run_settings_recorded"] and not there["run_settings_recorded"]:
        return ["its rows were recorded before run settings were (step cap, seed, ... unknown)"]
    keys = [k for k in sorted(set(here) | set(there)) if k != "run_settings_recorded" and here.get(k) != there.get(k)]
    return [f"{NAMES.get(k, k.replace('_', ' '))}: {describe(here.get(k))} here, {describe(there.get(k))} there"
            for k in keys]


def comparable_previous_run(url: str, dag_id: str, run_id: str) -> Comparison:
    with connect(url) as connection:
        rows = [dict(row) for row in connection.execute(RUNS, {"dag_id": dag_id, "run_id": run_id}).mappings()]
    own = [signature(row) for row in rows if row["run_id"] == run_id]
    if not own:
        return Comparison(None, None)
    here = own[0]
    earlier: dict[str, list[dict]] = {}
    for row in rows:
        if row["run_id"] != run_id:
            earlier.setdefault(row["run_id"], []).append(signature(row))
    for candidate, signatures in earlier.items():  # newest first (dicts keep the query's order)
        if all(s == here for s in signatures):
            return Comparison(candidate, None)
    if not earlier:
        return Comparison(None, None)
    nearest, signatures = next(iter(earlier.items()))
    differs = differences(here, signatures[0])
    return Comparison(None, f"no earlier successful run of this tier is comparable ({len(earlier)} checked); "
                            f"the latest, {nearest}, differs in " + "; ".join(differs))
