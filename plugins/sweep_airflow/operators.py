"""Operators of the sweep DAGs. Each builds one typed object, hands it to the training package,
and returns a small dict; no training logic lives here."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from training.paths import experiments_root, safe_name


NO_RETRY_OUTCOMES = ("oom", "nan_loss")


def _run_type(context) -> str:
    run_type = getattr(context["dag_run"], "run_type", "manual")
    return getattr(run_type, "value", str(run_type))  # an enum on the worker; store its value


class TrainExperimentOperator(BaseOperator):
    """Train one grid point of one model in a subprocess (`python -m training run-experiment`).

    The subprocess's log streams into the task log; killing the task stops the subprocess.
    Runs on the GPU the worker exposes (CUDA_VISIBLE_DEVICES), or on the CPU where there is none.
    """

    template_fields = ("budget", "dataset_source", "selected_models", "max_steps", "seed", "reuse_results")
    ui_color = "#e8f1fb"

    def __init__(self, *, model_id: str, learning_rate: float, batch_size: int, num_epochs: int,
                 weight_decay: float, gradient_accumulation_steps: int, budget: str = "full",
                 dataset_source: str | None = None, plan_path: str | None = None,
                 selected_models: list[str] | None = None, max_steps: int | None = None, seed: int | None = None,
                 reuse_results: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.weight_decay = weight_decay
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.budget = budget
        self.dataset_source = dataset_source
        self.plan_path = plan_path
        self.selected_models = selected_models
        self.max_steps = max_steps
        self.seed = seed
        self.reuse_results = reuse_results
        self._process = None

    def execute(self, context) -> dict[str, Any]:
        from training.launcher import run_in_subprocess
        from training.plan import Hyperparameters, load_plan
        from training.spec import build_spec

        if self.selected_models and self.model_id not in self.selected_models:
            raise AirflowSkipException(f"{self.model_id} was not selected for this run")
        if not os.environ.get("SWEEP_DATABASE_URL"):
            raise RuntimeError("SWEEP_DATABASE_URL is not set: the experiment would have nowhere to record its result")
        hyperparameters = Hyperparameters(self.learning_rate, self.batch_size, self.num_epochs,
                                          self.weight_decay, self.gradient_accumulation_steps)
        spec = build_spec(load_plan(self.plan_path), self.model_id, hyperparameters, budget_name=self.budget,
                          dataset_source=self.dataset_source or None, dag_id=self.dag_id,
                          run_id=context["run_id"], run_type=_run_type(context), max_steps=self.max_steps,
                          seed=self.seed, reuse_results=bool(self.reuse_results))
        ti = context["ti"]
        work_dir = (experiments_root() / safe_name(self.dag_id) / safe_name(context["run_id"]) / "tasks"
                    / f"{safe_name(self.task_id)}-{ti.map_index}-try{ti.try_number}")
        # Stop training a little before Airflow's own timeout, so the run still evaluates its best.
        time_limit = self.execution_timeout.total_seconds() * 0.9 if self.execution_timeout else None
        result = run_in_subprocess(spec, work_dir, self.log.info, on_start=self._remember,
                                   time_limit_seconds=time_limit)
        if result["stop_reason"] in NO_RETRY_OUTCOMES:
            # Recorded already; retrying would fail the same way and spend GPU time doing it.
            raise AirflowFailException(f"experiment {result['experiment_key']} stopped: {result['stop_reason']}")
        return {"experiment_key": result["experiment_key"], "validation_f1": result["validation_f1"],
                "test_f1": result["test_f1"], "gpu_hours": result["gpu_hours"],
                "stop_reason": result["stop_reason"]}

    def _remember(self, process) -> None:
        self._process = process

    def on_kill(self) -> None:
        from training.launcher import stop

        if self._process is not None:
            self.log.info("stopping training process %s", self._process.pid)
            stop(self._process)


class ReportLink(BaseOperatorLink):
    """The run's HTML report, from the report task in the UI (computed on the worker after execute)."""

    name = "Report"

    def get_link(self, operator, *, ti_key) -> str:
        from training.report import report_dir

        return (report_dir(ti_key.dag_id, ti_key.run_id) / "report.html").as_uri()


class RenderReportOperator(BaseOperator):
    """Close the sweep run in the results DB and render its report (Markdown and HTML); return its path."""

    ui_color = "#eef8ee"
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, tier: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tier = tier

    def execute(self, context) -> str:
        from training.database import results_database_url
        from training.report import render_run_report
        from training.results import finish_sweep_run

        url = results_database_url()
        status = finish_sweep_run(url, self.dag_id, context["run_id"], self.tier, _run_type(context))
        path = render_run_report(url, self.dag_id, context["run_id"])
        self.log.info("sweep run %s: %s; report written to %s", context["run_id"], status, path)
        return str(path)


class VerifySweepOperator(BaseOperator):
    """Fail the DAG run when any experiment of it failed or never recorded a result; runs last, so
    the report is rendered first."""

    template_fields = ("selected_models",)

    def __init__(self, *, experiments_per_model: int, selected_models: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.experiments_per_model = experiments_per_model
        self.selected_models = selected_models

    def execute(self, context) -> dict[str, int]:
        from training.database import results_database_url
        from training.results import SUCCEEDED, run_experiments

        expected = self.experiments_per_model * len(self.selected_models)
        records = run_experiments(results_database_url(), self.dag_id, context["run_id"])
        succeeded = [r for r in records if r["status"] == "finished" and r["stop_reason"] in SUCCEEDED]
        problems = [f"{r['model_id']} lr={r['learning_rate']:g} bs={r['batch_size']} ep={r['num_epochs']} "
                    f"wd={r['weight_decay']:g}: {r['stop_reason'] or r['status']}"
                    for r in records if r not in succeeded]
        missing = expected - len(records)
        if problems or missing > 0:
            raise AirflowFailException(
                f"{len(succeeded)} of {expected} experiments succeeded"
                + (f"; {missing} recorded no result" if missing > 0 else "")
                + "".join(f"\n  {line}" for line in problems))
        return {"succeeded": len(succeeded)}
