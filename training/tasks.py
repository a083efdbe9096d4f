"""The entry points the Airflow operators call: one function per task kind. Each resolves the
runtime settings once (storage and the results database, see settings.py), hands typed objects
to the package, and returns what the task reports. Airflow itself is never imported here."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from training.plan import GRID_FIELDS, Hyperparameters, ParamError, Plan, closest, load_plan
from training.results.record import ExperimentResult
from training.plan import PlanError
from training.settings import SettingsError, Storage, database_url
from training.spec import ExperimentSpec, build_spec

# A plan, a run parameter or a setting that is wrong: retrying cannot help.
CONFIGURATION_ERRORS = (PlanError, ParamError, SettingsError)


def experiment_spec(*, model_id: str, hyperparameters: dict, tier: str | None = None,
                    plan_path: str | None = None, budget: str = "full",
                    dataset: str | None = None, max_steps: int | None = None, seed: int | None = None,
                    reuse_results: bool = False, dag_id: str = "", run_id: str = "", run_type: str = "manual",
                    require_database: bool = True) -> ExperimentSpec:
    """The spec of one grid point, built the same way for an Airflow task and for the CLI."""
    plan = load_plan(plan_path)
    return build_spec(plan, model_id, grid_point(plan, model_id, tier, hyperparameters), budget_name=budget,
                      dataset_source=dataset or None, dag_id=dag_id, run_id=run_id, run_type=run_type,
                      max_steps=max_steps, seed=seed, reuse_results=bool(reuse_results),
                      storage=Storage.from_environment(),
                      database_url=database_url("a training task" if require_database else None))


def grid_point(plan: Plan, model_id: str, tier_name: str | None, values: dict) -> Hyperparameters:
    """One combination of the model's tier grid; a value the tier's grid lacks is an error naming
    the field and the grid's values. A field left out takes the grid's value where it has just one."""
    if model_id not in plan.architectures:
        raise ParamError("model", model_id, f"not a model of the plan; {closest(model_id, plan.architectures)}")
    tier = plan.tier_of(model_id)
    if tier_name is not None and tier_name != tier.name:
        raise ParamError("tier", tier_name, f"{model_id} is in the {tier.name!r} tier")
    for name in sorted(set(values) - set(GRID_FIELDS)):
        raise ParamError(name, values[name], f"not a hyperparameter; {closest(name, GRID_FIELDS)}")
    point = {}
    for name in GRID_FIELDS:
        allowed = tier.grid[name]
        if name not in values and len(allowed) == 1:
            point[name] = allowed[0]
        elif values.get(name) not in allowed:
            raise ParamError(name, values.get(name), f"not in the {tier.name} tier's grid {list(allowed)}")
        else:
            point[name] = values[name]
    return Hyperparameters(**point)


def train(spec: ExperimentSpec, *, task_id: str, map_index: int, try_number: int, log: Callable[[str], None],
          on_start: Callable[[subprocess.Popen], None] | None = None,
          time_limit_seconds: float | None = None) -> ExperimentResult:
    """Run the experiment in its own process; its spec and result files go in the task try's folder."""
    from training.engine.launcher import run_in_subprocess

    work_dir = spec.runtime().task_dir(spec.dag_id, spec.run_id, task_id, map_index, try_number)
    return run_in_subprocess(spec, work_dir, log, on_start=on_start, time_limit_seconds=time_limit_seconds)


def report(dag_id: str, run_id: str, tier: str, run_type: str) -> tuple[str, Path]:
    """Close the sweep run in the results DB and render its report; (run status, report path)."""
    from training.report.build import render_run_report
    from training.results.store import finish_sweep_run

    url = database_url("the report task")
    status = finish_sweep_run(url, dag_id, run_id, tier, run_type)
    return status, render_run_report(url, dag_id, run_id, Storage.from_environment().report_dir(dag_id, run_id))


def report_path(dag_id: str, run_id: str) -> Path:
    return Storage.from_environment().report_dir(dag_id, run_id) / "report.html"


def verify(dag_id: str, run_id: str, experiments_per_model: int, selected_models: list[str]) -> int:
    """The number of experiments that succeeded; raises SweepRunFailed naming each that did not."""
    from training.results.store import run_experiments
    from training.results.verdict import check_run

    records = run_experiments(database_url("the verify task"), dag_id, run_id)
    return check_run(records, experiments_per_model * len(selected_models))
