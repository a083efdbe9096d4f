"""
### Fine-tuning sweep, one DAG per tier

Generated from the training plan (`training/plan.toml`): one task group per model, and in it one
training task mapped over the tier's hyperparameter grid (an explicit, sorted list, so map indexes
are stable). Each mapped instance trains one configuration in a subprocess, keeps the best
checkpoint by validation F1, and records F1 and GPU-hours in Postgres. Then the report task renders
the recommendation report from those rows, whatever happened to the trainings, and the export task
packages each model's chosen checkpoint as a Hugging Face model folder with a model card (checked
against its recorded test predictions) and adds them to the report. With the plan's
`keep_checkpoints_of_runs` set, `prune_checkpoints` then removes older runs' checkpoint weights.

Trigger with `budget` = `demo` or `tiny` for a smoke run, and `dataset` = a hub id or local folder.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Asset, Param, TaskGroup

from sweep_airflow.kubernetes import on_kubernetes, training_pod_override
from sweep_airflow.operators import (
    ChooseSeedRerunsOperator,
    ExportWinnersOperator,
    PruneCheckpointsOperator,
    RenderReportOperator,
    TrainExperimentOperator,
    VerifySweepOperator,
    start_sweep,
)
from training.plan import MAX_STEPS_CAP, SEED_MAX, Plan, PlanError, Tier, load_plan
from training.settings import RunDefaults, safe_name

MAP_INDEX_TEMPLATE = (
    "lr={{ task.learning_rate }} bs={{ task.batch_size }} ep={{ task.num_epochs }} wd={{ task.weight_decay }}"
)
SEED_MAP_INDEX_TEMPLATE = "seed={{ task.seed }} " + MAP_INDEX_TEMPLATE
# What the form checks is what it can say at the field: types and choices. The numbers are two JSON
# types, so the UI draws a text field that keeps what is typed and says at the field when it is not
# a number (its number field turned a typed "-5" into NaN and then empty: a run with no step cap).
# Ranges and "at least one model" are the start task's (training/parameters.py): a value out of
# range reaches the run as typed, and the run fails before any training with the reason as its
# note, on the page the UI opens after Trigger. (The server's own refusal appears at the top of the
# trigger dialog, scrolled out of view, under a JSON-schema dump.)
TYPED_NUMBER = ["integer", "number"]
ADVANCED = "Advanced (seed, pruning, GPU-hour budget, reuse)"  # a collapsed section of the form


def trigger_params(plan: Plan, tier: Tier, defaults: RunDefaults) -> dict[str, Param]:
    """The trigger form: JSON-Schema checked, so a bad value is refused before a run exists.
    Scheduled runs take the defaults: the whole plan as written, unless the deployment overrides
    the dataset and budget (training/settings.py RunDefaults, e.g. an offline stack)."""
    budget = defaults.budget or "full"
    if budget not in plan.budgets:
        raise PlanError("SWEEP_DEFAULT_BUDGET", "budget", budget, f"not a budget of the plan {sorted(plan.budgets)}")
    return {
        "budget": Param(budget, type="string", enum=sorted(plan.budgets), title="Budget",
                        description="full = the plan as written; demo and tiny shrink data and evaluation cadence"),
        "dataset": Param(defaults.dataset, type=["null", "string"], title="Dataset",
                         description=f"a hub id, or a local folder of train/validation/test files (check it first "
                                     f"with `python -m training check-data FOLDER`); empty = {plan.dataset.source}, "
                                     "from the Hugging Face hub"),
        # `examples` on the array is what makes the UI draw a multi-select (items.enum validates).
        "models": Param(list(tier.models), type="array", title="Models", examples=list(tier.models),
                        items={"type": "string", "enum": list(tier.models)}, uniqueItems=True,
                        description="which models of the tier to train (at least one); the others are skipped"),
        "max_steps": Param(None, type=["null", *TYPED_NUMBER], title="Step cap",
                           description="stop every experiment after at most this many optimizer steps (smoke "
                                       "runs); it only shortens a run, never past the grid's epochs; a whole "
                                       f"number from 1 to {MAX_STEPS_CAP:,}, or empty for none"),
        "seed": Param(plan.settings.seed, type=["null", *TYPED_NUMBER], title="Seed", section=ADVANCED,
                      description=f"random seed of initialisation and batch order (a budget's row sample stays "
                                  f"the plan's data_seed {plan.settings.data_seed}): a whole number from 0 to "
                                  f"{SEED_MAX:,}; empty = the plan's ({plan.settings.seed})"),
        "pruning": Param(None, type=["null", "boolean"], title="Pruning", section=ADVANCED,
                         description="successive halving across each model's grid: stop a run that is behind "
                                     "its peers at a rung; empty = the plan's setting for this tier ("
                                     + ("on" if tier.pruning else "off") + ")"),
        "max_gpu_hours": Param(None, type=["null", *TYPED_NUMBER], title="Budget (GPU-hours)",
                               section=ADVANCED,
                               description="refuse the run before any training when its estimate (from this "
                                           "deployment's earlier runs) is above this number; empty = the plan's "
                                           f"setting for this tier ({tier.max_gpu_hours or 'none'})"),
        "reuse_results": Param(False, type="boolean", title="Reuse earlier results", section=ADVANCED,
                               description="copy the result of an experiment whose full fingerprint (model, "
                                           "hyperparameters, data, settings) already succeeded, instead of training"),
    }


def training_arguments(plan: Plan, tier: Tier, model_id: str, executor: str | None = None) -> dict:
    """What every training task of a model shares, grid and seed reruns alike; under
    KubernetesExecutor, also the pod each task runs in (the plan's [deployment] section)."""
    from airflow.sdk.configuration import conf

    executor = executor if executor is not None else conf.get("core", "executor")
    pods = {}
    if on_kubernetes(executor):
        pods["executor_config"] = training_pod_override(plan.deployment)
    return dict(**pods,
        model_id=model_id,
        budget="{{ params.budget }}",
        dataset="{{ params.dataset }}",
        selected_models="{{ params.models }}",
        max_steps="{{ params.max_steps }}",
        reuse_results="{{ params.reuse_results }}",
        pruning="{{ params.pruning }}",
        plan_path=plan.path,
        pool="gpu",
        queue="gpu",  # CeleryExecutor: only the GPU workers take these
        priority_weight=tier.priority_weight,
        # A retry resumes from the experiment's last checkpoint, not from step 0.
        retries=plan.scheduling.retries,
        retry_delay=timedelta(seconds=plan.scheduling.retry_delay_seconds),
    )


def build_tier_dag(plan: Plan, tier: Tier) -> DAG:
    """The DAG of one tier: a mapped training task per model, then the report, the export of each
    model's chosen checkpoint, and the check that every experiment recorded a result."""
    with DAG(
        dag_id=f"sweep_{tier.name}",
        description=f"{tier.name} tier: {', '.join(tier.models)}",
        doc_md=__doc__,
        schedule=tier.schedule,  # nightly rerun; a manual trigger waits for a running one (max_active_runs)
        start_date=datetime.combine(plan.scheduling.start_date, time(), UTC),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,  # bringing the stack up never starts GPU work by itself
        tags=["sweep", tier.name],
        params=trigger_params(plan, tier, RunDefaults.from_environment()),
        render_template_as_native_obj=True,  # params reach the operators as lists, ints and booleans
    ) as dag:
        # Checks the params and skips a late scheduled run (one made by enabling the DAG) before
        # any training; ignoring trigger rules, so the report and the check are skipped with it.
        start = ShortCircuitOperator(task_id="start", python_callable=start_sweep,
                                     op_kwargs={"tier": tier.name, "plan_path": plan.path},
                                     ignore_downstream_trigger_rules=True)
        trainings = []
        for model_id in tier.models:
            with TaskGroup(group_id=safe_name(model_id).replace(".", "_")):
                grid_runs = TrainExperimentOperator.partial(
                    task_id="train", seed="{{ params.seed }}", map_index_template=MAP_INDEX_TEMPLATE,
                    **training_arguments(plan, tier, model_id),
                ).expand_kwargs([combo.as_dict() for combo in tier.combinations()])
                trainings.append(grid_runs)
                if plan.settings.confirm_seeds:
                    # After the whole grid: the chosen configuration again with more seeds.
                    choose = ChooseSeedRerunsOperator(task_id="choose_seed_reruns", model_id=model_id,
                                                      count=plan.settings.confirm_seeds, seed="{{ params.seed }}",
                                                      selected_models="{{ params.models }}", trigger_rule="all_done")
                    confirm = TrainExperimentOperator.partial(
                        task_id="confirm", map_index_template=SEED_MAP_INDEX_TEMPLATE,
                        **training_arguments(plan, tier, model_id),
                    ).expand_kwargs(choose.output)
                    grid_runs >> choose
                    trainings.append(confirm)
        report = RenderReportOperator(task_id="report", tier=tier.name, trigger_rule="all_done",
                                      outlets=[Asset(name=f"sweep_{tier.name}_report")])
        # After the report, whatever happened: the run fails if any experiment did not succeed.
        verify = VerifySweepOperator(task_id="verify",
                                     experiments_per_model=len(tier.combinations()) + plan.settings.confirm_seeds,
                                     selected_models="{{ params.models }}", trigger_rule="all_done")
        export = ExportWinnersOperator(task_id="export")  # after a report, whatever the trainings did
        start >> trainings
        trainings >> report >> [verify, export]
        if plan.scheduling.keep_checkpoints_of_runs:  # retention, once this run's winners are exported
            export >> PruneCheckpointsOperator(task_id="prune_checkpoints", trigger_rule="all_done",
                                               keep_runs=plan.scheduling.keep_checkpoints_of_runs)
    return dag


_plan = load_plan()
for _tier_name in sorted(_plan.tiers):
    globals()[f"sweep_{_tier_name}"] = build_tier_dag(_plan, _plan.tiers[_tier_name])
