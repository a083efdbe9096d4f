"""The entry points the Airflow operators call: one function per task kind. Each resolves the
runtime settings once (storage and the results database, see settings.py), hands typed objects
to the package, and returns what the task reports. Airflow itself is never imported here."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from training.parameters import RunParameters
from training.plan import GRID_FIELDS, Hyperparameters, ParamError, Plan, PlanError, Tier, closest, load_plan
from training.results.record import ExperimentResult
from training.settings import SettingsError, Storage, database_url
from training.spec import ExperimentSpec, build_spec

# A plan, a run parameter or a setting that is wrong: retrying cannot help.
CONFIGURATION_ERRORS = (PlanError, ParamError, SettingsError)


def experiment_spec(*, model_id: str, hyperparameters: dict, run: RunParameters, tier: str | None = None,
                    plan_path: str | None = None, dag_id: str = "", run_id: str = "", run_type: str = "manual",
                    require_database: bool = True, confirmation_of: str | None = None) -> ExperimentSpec:
    """The spec of one grid point, built the same way for an Airflow task and for the CLI."""
    plan = load_plan(plan_path)
    return build_spec(plan, model_id, grid_point(plan, model_id, tier, hyperparameters), run, dag_id=dag_id,
                      run_id=run_id, run_type=run_type, confirmation_of=confirmation_of,
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


def start_decision(*, tier: str, params: dict, run_type: str, scheduled_for: datetime | None,
                   now: datetime, plan_path: str | None = None, dag_id: str = "", run_id: str = "",
                   log: Callable[[str], None] = print) -> tuple[bool, str]:
    """(go ahead, why) for a tier run, before any training: its params must pass the plan's rules
    (a ParamError names the first that does not), and a scheduled run that starts later than the
    plan's tolerance after its cron time is one Airflow made on enabling the DAG, so it is skipped.
    A run that goes ahead is priced (logged, and recorded for the report); one priced above its
    max_gpu_hours raises BudgetExceeded with the breakdown. A results database without every
    migration of this code raises SchemaBehind (its rows could not be recorded)."""
    plan = load_plan(plan_path)
    if url := database_url():
        from training.results.database import check_schema

        check_schema(url)  # SchemaBehind: a run that could not record its rows is refused here
    run = RunParameters.from_trigger(params, plan, tier)
    check_sources_reachable(run.dataset_source(plan), list(run.models), Storage.from_environment())
    tolerance = timedelta(minutes=plan.scheduling.late_start_tolerance_minutes)
    if run_type == "scheduled" and scheduled_for is not None and now - scheduled_for > tolerance:
        late = timedelta(seconds=int((now - scheduled_for).total_seconds()))  # no microseconds
        return False, (f"scheduled for {scheduled_for:%Y-%m-%d %H:%M} UTC but starting {late} later, beyond the "
                       f"plan's tolerance of {tolerance}: Airflow made this run for a missed cron time when the "
                       "DAG was enabled. Skipped before any training; the next run is at the next cron time.")
    estimate_and_gate(plan, plan.tiers[tier], run, dag_id, run_id, log)
    return True, f"{run_type} run of {', '.join(run.models)} on budget {run.budget}: go"


def estimate_and_gate(plan: Plan, tier: Tier, run: RunParameters, dag_id: str, run_id: str,
                      log: Callable[[str], None]) -> None:
    """Price the run from this deployment's history, log and record the estimate, and refuse the
    run (BudgetExceeded) when it is above max_gpu_hours (the param, else the tier's setting)."""
    from training.engine.models import resolve_model_source
    from training.results.estimates import estimate_tier, gate
    from training.results.history import record_estimate

    storage = Storage.from_environment()
    url = database_url()
    estimate = estimate_tier(url, plan, tier, run, {m: resolve_model_source(m, storage.model_root) for m in run.models})
    log(estimate.breakdown())
    if url and dag_id:
        try:
            record_estimate(url, dag_id, run_id, estimate)
        except Exception as error:  # the estimate is for the report; a write failure must not stop the run
            log(f"could not record the estimate ({type(error).__name__}: {error}); the report will lack it")
    gate(estimate)
    if estimate.max_gpu_hours is not None:
        log(f"within max_gpu_hours = {estimate.max_gpu_hours:g}: go")


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None: a few seconds, not the minutes
    the hub client spends retrying."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=5).close()
    except OSError as error:
        return f"{endpoint.hostname}:{port}: {error}"
    return None


def check_sources_reachable(dataset: str, models: list[str], storage: Storage) -> None:
    """The dataset and every model come from a local folder, or from a hub this machine reaches;
    otherwise a ParamError that says how to point at a local copy."""
    from training.data.loading import missing_local_source
    from training.engine.models import resolve_model_source

    if problem := missing_local_source(dataset):
        raise ParamError("dataset", dataset, problem)
    from_hub = [] if Path(dataset).is_dir() else [("dataset", dataset, "give a local dataset folder instead")]
    from_hub += [("models", model_id, "mirror it to $SWEEP_MODEL_ROOT/" + model_id)
                 for model_id in models if resolve_model_source(model_id, storage.model_root) == model_id]
    if from_hub and (why := hub_unreachable()):
        name, value, fix = from_hub[0]
        raise ParamError(name, value, f"needs the Hugging Face hub, which cannot be reached from this machine "
                                      f"({why}); {fix}")


def train(spec: ExperimentSpec, *, task_id: str, map_index: int, try_number: int, log: Callable[[str], None],
          on_start: Callable[[subprocess.Popen], None] | None = None,
          time_limit_seconds: float | None = None) -> ExperimentResult:
    """Run the experiment in its own process; its spec and result files go in the task try's folder."""
    from training.engine.launcher import run_in_subprocess

    work_dir = spec.runtime().task_dir(spec.dag_id, spec.run_id, task_id, map_index, try_number)
    return run_in_subprocess(spec, work_dir, log, on_start=on_start, time_limit_seconds=time_limit_seconds)


def report(dag_id: str, run_id: str, tier: str, run_type: str, refusal: str | None = None,
           params: dict | None = None) -> tuple[str, Path]:
    """Close the sweep run in the results DB and render its report; (run status, report path).
    refusal: why the start task refused the run; params: what it was triggered with (for the index)."""
    from training.report.published import publish
    from training.report.render import render_run_report
    from training.results.store import finish_sweep_run

    url = database_url("the report task")
    status = finish_sweep_run(url, dag_id, run_id, tier, run_type)
    status = "refused" if refusal else status  # recorded as closed with nothing trained; shown as refused
    shown = {name: (params or {}).get(name) for name in ("budget", "dataset", "models", "max_steps", "seed")}
    summary = {"tier": tier, "run_type": run_type, "status": status, "params": shown}
    storage = Storage.from_environment()
    html = render_run_report(url, dag_id, run_id, storage.report_dir(dag_id, run_id), refusal, summary)
    publish(storage, html.parent)  # to the artifact store, where the report server reads it (if one is set)
    return status, html


def export(dag_id: str, run_id: str, log: Callable[[str], None]) -> list[str]:
    """Export each model's chosen checkpoint of the run (training/export) and render the report
    again with them; a run with nothing to export (refused, every experiment failed) exports
    nothing and says so. Returns the destinations."""
    from training.export.choose import NothingToExport
    from training.export.package import export_run
    from training.report.published import publish
    from training.report.render import render_again

    url = database_url("the export task")
    try:
        exported = export_run(url, dag_id, run_id, log=log)
    except NothingToExport as nothing:
        log(f"nothing to export: {nothing}")
        return []
    storage = Storage.from_environment()
    html = render_again(url, dag_id, run_id, storage.report_dir(dag_id, run_id))
    publish(storage, html.parent)
    return [e.destination for e in exported]


def seed_confirmations(dag_id: str, run_id: str, model_id: str, count: int, seed: int | None) -> list[dict]:
    """The reruns of a model's chosen configuration (by validation F1, among this run's grid) with
    `count` more seeds (seed+1 ... seed+count; seed None: the chosen run's own), as the confirm
    task's mapped arguments; none when no grid point succeeded."""
    from training.results.selection import best_of
    from training.results.store import run_experiments

    records = [r for r in run_experiments(database_url("the seed-confirmation task"), dag_id, run_id)
               if r.model_id == model_id]
    best = best_of(records)
    if best is None:
        return []
    seed = best.seed if seed is None else seed
    return [{**{name: getattr(best, name) for name in GRID_FIELDS}, "seed": seed + offset,
             "confirmation_of": best.experiment_key} for offset in range(1, count + 1)]


def verify(dag_id: str, run_id: str, experiments_per_model: int, selected_models: list[str]) -> int:
    """The number of experiments that succeeded; raises SweepRunFailed naming each that did not."""
    from training.results.store import run_experiments
    from training.results.verdict import check_run

    records = run_experiments(database_url("the verify task"), dag_id, run_id)
    return check_run(records, experiments_per_model * len(selected_models))


def prune(dag_id: str, keep_runs: int, log: Callable[[str], None]) -> int:
    """Retention after a run (the plan's scheduling.keep_checkpoints_of_runs): the weights of this
    DAG's runs older than its newest keep_runs go, in the store and on this worker; returns the count."""
    from training.results.retention import prune_here

    return prune_here(database_url("the prune task"), keep_runs, dag_id, log=log)
