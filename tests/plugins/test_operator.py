"""The training operator called as Airflow calls it (execute with a context), on stand-in models:
it returns a small dict, records the result, and on_kill stops the training subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import sqlalchemy as sa


def make_operator(**overrides):
    from airflow.sdk import DAG

    from sweep_airflow.operators import TrainExperimentOperator

    arguments = {"model_id": "microsoft/codebert-base", "learning_rate": 5e-5, "batch_size": 16, "num_epochs": 3,
                 "weight_decay": 0.01, "gradient_accumulation_steps": 1, "budget": "tiny", **overrides}
    with DAG("operator_test", schedule=None):
        return TrainExperimentOperator(task_id="train", **arguments)


class TaskInstance(SimpleNamespace):
    """What the operators use of Airflow's task instance; XComs in a dict (the real ones: tests/integration)."""

    def __init__(self, xcoms=None):
        super().__init__(map_index=0, try_number=1, xcoms=dict(xcoms or {}))

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key, value):
        self.xcoms[("self", key)] = value


def context(run_id="manual__op", xcoms=None):
    return {"run_id": run_id, "dag_run": SimpleNamespace(run_type="manual"), "ti": TaskInstance(xcoms),
            "params": {}}


@pytest.fixture
def sweep_env(monkeypatch, dataset_dir, model_root, fresh_database):
    monkeypatch.setenv("SWEEP_MODEL_ROOT", str(model_root))
    monkeypatch.setenv("SWEEP_DATABASE_URL", fresh_database)
    return fresh_database


def test_execute_trains_records_and_returns_a_small_dict(sweep_env, dataset_dir, tmp_path):
    operator = make_operator(dataset=str(dataset_dir))
    summary = operator.execute(context())
    assert set(summary) == {"experiment_key", "validation_f1", "test_f1", "gpu_hours", "stop_reason"}
    assert summary["gpu_hours"] == 0.0
    with sa.create_engine(sweep_env).connect() as connection:
        row = connection.execute(sa.text("SELECT dag_id, run_id, experiment_key FROM experiments")).one()
        run_status = connection.execute(sa.text("SELECT status FROM sweep_runs")).scalar_one()
    assert tuple(row) == ("operator_test", "manual__op", summary["experiment_key"])
    assert run_status == "running"  # a DAG run's sweep run is closed by its report task, not by a training

    # The CLI's spec of the same grid point, named as in the plan, is the operator's to the byte.
    from training.settings import Storage

    task_spec = Storage.from_environment().task_dir("operator_test", "manual__op", "train", 0, 1) / "spec.json"
    assert oct(task_spec.stat().st_mode & 0o777) == "0o600"  # it may hold the database password
    cli_spec = tmp_path / "cli-spec.json"
    subprocess.run([sys.executable, "-m", "training", "spec", "--out", str(cli_spec), "--tier", "small",
                    "--model", "microsoft/codebert-base", "--learning-rate", "5e-5", "--batch-size", "16",
                    "--epochs", "3", "--weight-decay", "0.01", "--budget", "tiny", "--dataset", str(dataset_dir),
                    "--dag-id", "operator_test", "--run-id", "manual__op"], check=True, timeout=120)
    assert json.loads(cli_spec.read_text()) == json.loads(task_spec.read_text())


def test_an_experiment_run_from_the_command_line_closes_its_sweep_run(sweep_env, dataset_dir, tmp_path):
    # No report task will: it stayed "running" in sweep_runs (issue 27).
    completed = subprocess.run([sys.executable, "-m", "training", "run-experiment", "--tier", "small", "--model",
                                "microsoft/codebert-base", "--learning-rate", "5e-5", "--batch-size", "16",
                                "--epochs", "3", "--weight-decay", "0.01", "--budget", "tiny", "--dataset",
                                str(dataset_dir), "--result", str(tmp_path / "result.json")],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with sa.create_engine(sweep_env).connect() as connection:
        runs = connection.execute(sa.text("SELECT status, finished_at FROM sweep_runs")).all()
        settings = connection.execute(sa.text("SELECT run_settings FROM experiments")).scalar_one()
    assert len(runs) == 1 and runs[0].status == "success" and runs[0].finished_at is not None, runs
    # What the run's results depend on beyond the grid point is on the row, for like-with-like comparisons.
    assert settings["budget"] == "tiny" and settings["seed"] == 42 and settings["max_steps"] == 8, settings
    assert settings["pruning"] is None and "hyperparameters" not in settings and "model_id" not in settings


def test_the_cli_refuses_a_grid_point_the_plan_lacks(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "training", "spec", "--out", str(tmp_path / "s.json"),
                                "--model", "microsoft/codebert-base", "--learning-rate", "3e-5", "--batch-size",
                                "16", "--epochs", "3", "--weight-decay", "0.01"], capture_output=True, text=True)
    assert completed.returncode != 0
    assert "learning_rate = 3e-05: not in the small tier's grid [2e-05, 5e-05]" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_without_a_results_database_the_task_fails_before_training(monkeypatch, dataset_dir):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("SWEEP_DATABASE_URL", raising=False)
    with pytest.raises(AirflowFailException, match="SWEEP_DATABASE_URL"):  # no retry: the same every time
        make_operator(dataset=str(dataset_dir)).execute(context())


def test_a_data_error_fails_the_task_once_without_a_retry(sweep_env, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "validation", "test"):
        (bad / f"{split}.jsonl").write_text('{"code": "x = 1", "label": "buggy"}\n{"code": "y = 2", "label": "ok"}\n')
    (bad / "dataset.json").write_text('{"text_columns": ["code"]}')  # but no positive_label for these labels
    with pytest.raises(AirflowFailException) as failure:  # AirflowFailException: Airflow does not retry it
        make_operator(dataset=str(bad)).execute(context())
    assert "invalid_data" in str(failure.value) and "positive_label" in str(failure.value)
    with sa.create_engine(sweep_env).connect() as connection:
        row = connection.execute(sa.text("SELECT stop_reason, error FROM experiments")).one()
    assert row.stop_reason == "invalid_data" and "the labels are ['buggy', 'ok']" in row.error


@pytest.mark.parametrize("overrides, named", [
    ({"budget": "huge"}, "budget = 'huge'"),
    ({"learning_rate": 3e-5}, "learning_rate = 3e-05: not in the small tier's grid"),
    ({"max_steps": 0}, "max_steps = 0"),
    ({"seed": -1}, "seed = -1"),
])
def test_a_bad_param_fails_the_task_once_before_training(sweep_env, dataset_dir, overrides, named):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=re.escape(named)):
        make_operator(dataset=str(dataset_dir), **overrides).execute(context())


def test_on_kill_stops_the_training_subprocess(sweep_env, dataset_dir, tmp_path):
    from tests.integration.stacks import plan_copy
    from training.engine.launcher import ExperimentFailed
    from training.settings import Storage

    # The soak budget on a 1,000-epoch grid point: it trains until its 90 s time cap, far longer
    # than this test waits, however fast the machine (a tiny stand-in's 5 epochs take 2 s).
    plan = plan_copy(tmp_path / "plan", single_point=True)
    operator = make_operator(dataset=str(dataset_dir), budget="soak", num_epochs=1000, plan_path=str(plan))
    outcome = {}

    def run():
        try:
            outcome["result"] = operator.execute(context("manual__kill"))
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    # In training once the attempt ledger has counted a step (it beats at every log).
    experiments = Path(Storage.from_environment().experiments_dir)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(
            json.loads(ledger.read_text() or "[]")[-1]["last_step"] > 0
            for ledger in experiments.glob("operator_test/*/*/attempts.json")):
        time.sleep(0.2)
    [training] = [child for child in psutil.Process().children(recursive=True)
                  if "run-experiment" in child.cmdline()]  # the operator's subprocess, still training
    operator.on_kill()
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ExperimentFailed)
    assert not psutil.pid_exists(training.pid) or training.status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ProcessLookupError):
        os.killpg(training.pid, 0)  # nothing of its process group is left


def verify_operator(experiments_per_model, models):
    from airflow.sdk import DAG

    from sweep_airflow.operators import VerifySweepOperator

    with DAG("sweep_small", schedule=None):
        return VerifySweepOperator(task_id="verify", experiments_per_model=experiments_per_model,
                                   selected_models=models)


def test_the_final_check_fails_the_run_for_a_failed_or_missing_experiment(monkeypatch, fresh_database):
    from airflow.sdk.exceptions import AirflowFailException

    from tests.training.fixtures import LATEST_RUN, PREVIOUS_RUN, warehouse_records
    from training.results.record import ExperimentResult
    from training.results.store import record_experiment

    monkeypatch.setenv("SWEEP_DATABASE_URL", fresh_database)
    for record in warehouse_records():
        record_experiment(fresh_database, ExperimentResult.from_dict(record))
    # the previous night: codebert 2 experiments, codet5 1 (the fixture's run of 3)
    assert verify_operator(1, ["microsoft/codebert-base", "Salesforce/codet5-small"]).execute(
        context(PREVIOUS_RUN)) == {"succeeded": 3}
    with pytest.raises(AirflowFailException, match="1 recorded no result"):
        verify_operator(2, ["microsoft/codebert-base", "Salesforce/codet5-small"]).execute(context(PREVIOUS_RUN))
    latest = context(LATEST_RUN)
    with pytest.raises(AirflowFailException, match=r"3 of 4 experiments succeeded\n  Salesforce/codet5-small lr=2e-05 "
                                                   r"bs=16 ep=3 wd=0.01: failed"):
        verify_operator(2, ["microsoft/codebert-base", "Salesforce/codet5-small"]).execute(latest)
    assert latest["ti"].xcoms[("self", "refusal")].startswith("3 of 4 experiments succeeded")  # the run's note
    # A run the start task refused trained nothing; the last task fails it even when nothing was expected.
    refused = context(PREVIOUS_RUN, {("start", "refusal"): "refused before any training: models = []: choose"})
    with pytest.raises(AirflowFailException, match="nothing was trained: refused before any training: models"):
        verify_operator(1, []).execute(refused)


def test_an_unselected_model_is_skipped_without_training():
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="not selected"):
        make_operator(selected_models=["Salesforce/codet5-small"]).execute(context())
