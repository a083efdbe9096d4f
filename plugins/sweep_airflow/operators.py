"""Operators of the sweep DAGs. Each calls one entry point of `training.tasks` and returns a
small dict; no training logic and no pass/fail rules live here."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from training.plan import GRID_FIELDS

REFUSAL_KEY = "refusal"  # the XCom of a task that refused the run: the run's note says it


def start_sweep(tier: str, plan_path: str | None, params: dict, dag_run, ti, **_) -> bool:
    """The first task of a tier run (a ShortCircuitOperator's callable): fail at once, for good, on
    a param the plan refuses or an estimate above the budget gate, saying why in the log's first
    line and on the run (its note, see listeners.py); skip the whole run when it is a late
    scheduled one."""
    import logging
    from datetime import datetime

    from training import tasks
    from training.results.estimates import BudgetExceeded

    log = logging.getLogger(__name__)
    run_type = getattr(dag_run.run_type, "value", str(dag_run.run_type))
    scheduled_for = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    lines, reason, go, why = [], None, False, ""
    try:
        go, why = tasks.start_decision(tier=tier, params=dict(params), run_type=run_type, scheduled_for=scheduled_for,
                                       now=datetime.now(UTC), plan_path=plan_path, dag_id=dag_run.dag_id,
                                       run_id=dag_run.run_id, log=lines.append)
    except tasks.CONFIGURATION_ERRORS as error:
        reason = f"refused before any training: {error}"
    except BudgetExceeded as error:  # the same on every retry: fail once, before any training
        reason = f"refused before any training by the budget gate: {error}"
    if reason:
        log.error(reason)  # the first line of the log: what the user must change
    log.info("params of this run: %s", {name: params[name] for name in sorted(params)})
    for line in lines:
        log.info(line)
    if reason:
        ti.xcom_push(key=REFUSAL_KEY, value=reason)  # the run's note (listeners.py)
        raise AirflowFailException(reason.splitlines()[0])
    log.info(why)
    return go


def _run_type(context) -> str:
    run_type = getattr(context["dag_run"], "run_type", "manual")
    return getattr(run_type, "value", str(run_type))  # an enum on the worker; store its value


class TrainExperimentOperator(BaseOperator):
    """Train one grid point of one model in a subprocess (`python -m training run-experiment`).

    The subprocess's log streams into the task log; killing the task stops the subprocess.
    Runs on the GPU the worker exposes (CUDA_VISIBLE_DEVICES), or on the CPU where there is none.

    :param model_id: the model's hub id, as in the plan.
    :param learning_rate: the grid point's learning rate (mapped).
    :param batch_size: the grid point's batch size (mapped).
    :param num_epochs: the grid point's epochs (mapped).
    :param weight_decay: the grid point's weight decay (mapped).
    :param gradient_accumulation_steps: the grid point's accumulation (mapped).
    :param budget: a budget of the plan (templated from the trigger param).
    :param dataset: a hub id or local folder; empty for the plan's (templated).
    :param plan_path: the plan file the DAG was generated from.
    :param selected_models: the trigger's models; a model not in it is skipped (templated).
    :param max_steps: a step cap that only shortens the run; None for none (templated).
    :param seed: the run's seed (templated; a seed rerun's own, mapped).
    :param reuse_results: copy an earlier run's result for the same experiment key (templated).
    :param confirmation_of: for a seed rerun, the experiment key of the grid run it repeats.
    :param pruning: successive halving on, off, or None for the tier's plan setting (templated).
    """

    template_fields = ("budget", "dataset", "selected_models", "max_steps", "seed", "reuse_results", "pruning")
    ui_color = "#e8f1fb"

    def __init__(self, *, model_id: str, learning_rate: float, batch_size: int, num_epochs: int,
                 weight_decay: float, gradient_accumulation_steps: int, budget: str = "full",
                 dataset: str | None = None, plan_path: str | None = None,
                 selected_models: list[str] | None = None, max_steps: int | None = None, seed: int | None = None,
                 reuse_results: bool = False, confirmation_of: str | None = None, pruning: bool | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.pruning = pruning
        self.model_id = model_id
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.weight_decay = weight_decay
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.budget = budget
        self.dataset = dataset
        self.plan_path = plan_path
        self.selected_models = selected_models
        self.max_steps = max_steps
        self.seed = seed
        self.reuse_results = reuse_results
        self.confirmation_of = confirmation_of
        self._process = None

    def execute(self, context) -> dict[str, Any]:
        from training import tasks
        from training.parameters import RunParameters

        if self.selected_models and self.model_id not in self.selected_models:
            raise AirflowSkipException(f"{self.model_id} was not selected for this run")
        try:
            run = RunParameters(budget=self.budget, dataset=self.dataset or None, max_steps=self.max_steps,
                                seed=self.seed, pruning=self.pruning, reuse_results=bool(self.reuse_results))
            spec = tasks.experiment_spec(
                model_id=self.model_id, hyperparameters={name: getattr(self, name) for name in GRID_FIELDS}, run=run,
                plan_path=self.plan_path, dag_id=self.dag_id, run_id=context["run_id"], run_type=_run_type(context),
                confirmation_of=self.confirmation_of)
        except tasks.CONFIGURATION_ERRORS as error:  # the same on every retry: fail once, now
            raise AirflowFailException(str(error)) from None
        ti = context["ti"]
        # Stop training a little before Airflow's own timeout, so the run still evaluates its best.
        time_limit = self.execution_timeout.total_seconds() * 0.9 if self.execution_timeout else None
        result = tasks.train(spec, task_id=self.task_id, map_index=ti.map_index, try_number=ti.try_number,
                             log=self.log.info, on_start=self._remember, time_limit_seconds=time_limit)
        if not (result.stop_reason.succeeded or result.stop_reason.retryable):
            # Recorded already; retrying would end the same way and spend GPU time doing it.
            raise AirflowFailException(f"experiment {result.experiment_key} stopped: {result.stop_reason}"
                                       + (f"\n{result.error}" if result.error else ""))
        return {"experiment_key": result.experiment_key, "validation_f1": result.validation_f1,
                "test_f1": result.test_f1, "gpu_hours": result.gpu_hours, "stop_reason": result.stop_reason.value}

    def _remember(self, process) -> None:
        self._process = process

    def on_kill(self) -> None:
        from training.engine.launcher import stop

        if self._process is not None:
            self.log.info("stopping training process %s", self._process.pid)
            stop(self._process)


class ChooseSeedRerunsOperator(BaseOperator):
    """After a model's grid: its chosen configuration (validation F1) with `count` more seeds, as
    the mapped arguments of the confirm task (plan setting confirm_seeds).

    :param model_id: the model whose chosen configuration is rerun.
    :param count: how many more seeds (seed + 1 ... seed + count).
    :param seed: the run's seed (templated from the trigger param).
    :param selected_models: the trigger's models; a model not in it is skipped (templated).
    """

    template_fields = ("selected_models", "seed")

    def __init__(self, *, model_id: str, count: int, seed: int | None, selected_models: list[str] | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.count = count
        self.seed = seed
        self.selected_models = selected_models

    def execute(self, context) -> list[dict]:
        from training import tasks

        if self.selected_models and self.model_id not in self.selected_models:
            raise AirflowSkipException(f"{self.model_id} was not selected for this run")
        seed = None if self.seed is None else int(self.seed)  # None: the grid's own (the plan's)
        reruns = tasks.seed_confirmations(self.dag_id, context["run_id"], self.model_id, self.count, seed)
        self.log.info("seed confirmation of %s: %s", self.model_id,
                      reruns or "no grid point succeeded; nothing to rerun")
        return reruns


class ReportLink(BaseOperatorLink):
    """The run's HTML report, from the report task in the UI (computed on the worker after execute)."""

    name = "Report"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.configuration import conf

        from sweep_airflow.report_server import report_url

        # Served by the api-server behind its login (report_server.py): the UI shows only http(s) links.
        return report_url(conf.get("api", "base_url", fallback="http://localhost:8080"), ti_key.dag_id,
                          ti_key.run_id)


class RenderReportOperator(BaseOperator):
    """Close the sweep run in the results DB and render its report (Markdown and HTML); return its path.

    :param tier: the tier of the DAG, recorded on the sweep run.
    """

    ui_color = "#eef8ee"
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, tier: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tier = tier

    def execute(self, context) -> str:
        from airflow.configuration import conf

        from sweep_airflow.report_server import report_url
        from training import tasks

        refusal = context["ti"].xcom_pull(task_ids="start", key=REFUSAL_KEY)
        status, path = tasks.report(self.dag_id, context["run_id"], self.tier, _run_type(context), refusal,
                                    dict(context["params"]))
        self.log.info("sweep run %s: %s; report written to %s", context["run_id"], status, path)
        # Last, where a reader of the log looks first: the address the report is served at.
        self.log.info("report: %s", report_url(conf.get("api", "base_url", fallback="http://localhost:8080"),
                                                self.dag_id, context["run_id"]))
        return str(path)


class ExportWinnersOperator(BaseOperator):
    """Export each model's chosen checkpoint as a Hugging Face model folder with a model card (to the
    artifact store, or $SWEEP_HOME/exports), checked against its recorded test predictions, and
    render the report again with them; return the folders."""

    ui_color = "#eef8ee"

    def execute(self, context) -> list[str]:
        from training import tasks

        return tasks.export(self.dag_id, context["run_id"], self.log.info)


class PruneCheckpointsOperator(BaseOperator):
    """Retention: remove the weights of the best checkpoints of this DAG's runs older than its newest
    keep_runs (predictions and reports stay); return how many.

    :param keep_runs: the plan's scheduling.keep_checkpoints_of_runs.
    """

    ui_color = "#f4f4f4"

    def __init__(self, *, keep_runs: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep_runs = keep_runs

    def execute(self, context) -> int:
        from training import tasks

        return tasks.prune(self.dag_id, self.keep_runs, self.log.info)


class VerifySweepOperator(BaseOperator):
    """Fail the DAG run when any experiment of it failed or never recorded a result; runs last, so
    the report is rendered first.

    :param experiments_per_model: how many experiments each selected model must have recorded.
    :param selected_models: the trigger's models (templated).
    """

    template_fields = ("selected_models",)

    def __init__(self, *, experiments_per_model: int, selected_models: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.experiments_per_model = experiments_per_model
        self.selected_models = selected_models

    def execute(self, context) -> dict[str, int]:
        from training import tasks
        from training.results.verdict import SweepRunFailed

        ti = context["ti"]
        # The start task failed the run before any training: this last task (the one Airflow's run
        # state follows) fails too, so a refused run is never marked a success.
        if refusal := ti.xcom_pull(task_ids="start", key=REFUSAL_KEY):
            raise AirflowFailException(f"nothing was trained: {refusal.splitlines()[0]}")
        try:
            succeeded = tasks.verify(self.dag_id, context["run_id"], self.experiments_per_model,
                                     self.selected_models)
        except SweepRunFailed as failure:
            ti.xcom_push(key=REFUSAL_KEY, value=str(failure))  # the run's note (listeners.py)
            raise AirflowFailException(str(failure)) from None
        return {"succeeded": succeeded}
