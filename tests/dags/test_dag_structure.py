"""The generated DAGs: they import cleanly, and hold exactly the plan's 72 mapped trainings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.plan import load_plan

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.mark.parametrize("tier_name", ["small", "medium", "large"])
def test_tiers_rerun_nightly_one_run_at_a_time_and_start_paused(dagbag, tier_name):
    dag = dagbag.dags[f"sweep_{tier_name}"]
    assert dag.schedule == load_plan().tiers[tier_name].schedule
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.is_paused_upon_creation is True


def test_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["sweep_large", "sweep_medium", "sweep_small"]


@pytest.mark.parametrize("tier_name, expected", [("small", 16), ("medium", 24), ("large", 32)])
def test_each_tier_maps_exactly_the_plan_combinations(dagbag, tier_name, expected):
    tier = load_plan().tiers[tier_name]
    dag = dagbag.dags[f"sweep_{tier_name}"]
    trainings = [task for task in dag.tasks if task.task_id.endswith(".train")]
    assert sorted(t.task_group.group_id for t in trainings) == sorted(
        m.replace("/", "_").replace(".", "_") for m in tier.models)
    total = 0
    for task in trainings:
        combos = task.expand_input.value
        assert combos == [c.as_dict() for c in tier.combinations()]  # explicit and sorted
        assert task.partial_kwargs["model_id"] in tier.models
        assert task.partial_kwargs["pool"] == "gpu"
        assert task.partial_kwargs["priority_weight"] == tier.priority_weight
        assert "lr={{ task.learning_rate }}" in task.partial_kwargs["map_index_template"]
        total += len(combos)
    assert total == expected


def test_report_runs_after_every_training_whatever_happened(dagbag, monkeypatch, tmp_path):
    from airflow.models.taskinstancekey import TaskInstanceKey

    dag = dagbag.dags["sweep_small"]
    report = dag.get_task("report")
    assert report.trigger_rule == "all_done"
    assert [asset.name for asset in report.outlets] == ["sweep_small_report"]  # downstream DAGs can wait on it
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org")
    link = report.operator_extra_links[0]
    key = TaskInstanceKey("sweep_small", "report", "manual__2026-11-26T10:00:00+00:00", 1, -1)
    assert link.name == "Report"
    # served by the api-server behind its login: an http(s) link, which the UI shows (file:// it drops)
    assert link.get_link(report, ti_key=key) == (
        "https://airflow.example.org/sweep-reports/sweep_small/manual__2026-11-26T10_00_00_00_00/report.html")
    assert {t.task_id for t in report.upstream_list} == {t.task_id for t in dag.tasks if t.task_id.endswith(".train")}
    verify = dag.get_task("verify")
    assert verify.upstream_task_ids == {"report"} and verify.trigger_rule == "all_done"
    start = dag.get_task("start")  # before any training: params checked, a late scheduled run skipped
    assert start.downstream_task_ids == {t.task_id for t in dag.tasks if t.task_id.endswith(".train")}
    assert start.ignore_downstream_trigger_rules  # so the report and the check are skipped with it
    assert verify.experiments_per_model == 8 and verify.selected_models == "{{ params.models }}"


def test_parsing_the_dags_loads_no_heavy_library_and_opens_no_connection():
    probe = (
        "import runpy, sys, socket\n"
        "def refuse(*a, **k): raise AssertionError('network or database access at parse time')\n"
        "socket.socket.connect = refuse\n"
        f"runpy.run_path({str(DAGS_DIR / 'sweep_tiers.py')!r})\n"
        "print(sorted({'torch', 'transformers', 'datasets', 'sklearn', 'psycopg2'} & set(sys.modules)))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_the_trigger_form_validates_its_params(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    params = dagbag.dags["sweep_medium"].params
    assert params["models"] == ["Salesforce/codet5-base", "Salesforce/codet5p-220m"]  # default: the whole tier
    assert (params["budget"], params["dataset"], params["max_steps"], params["seed"], params["reuse_results"]) == (
        "full", None, None, 42, False)  # scheduled runs: the plan as written
    form = params.get_param("models").serialize()  # what the UI builds its field from: a JSON-Schema
    assert form["schema"]["items"]["enum"] == ["Salesforce/codet5-base", "Salesforce/codet5p-220m"]
    assert form["schema"]["examples"] == form["schema"]["items"]["enum"]  # the UI's multi-select needs these
    for name, bad in [("models", ["Salesforce/codet5-large"]), ("budget", "huge"), ("max_steps", "eight"),
                      ("seed", "x"), ("reuse_results", "yes"), ("max_gpu_hours", [1])]:
        with pytest.raises(ParamValidationError):
            params.get_param(name).resolve(bad)
    # Numbers are typed in a text field that keeps what is typed (two JSON types), and their ranges are
    # the start task's, so a typed -5 reaches the run as typed and is refused there, never dropped.
    for name in ("max_steps", "seed", "max_gpu_hours"):
        schema = params.get_param(name).serialize()["schema"]
        assert set(schema["type"]) == {"null", "integer", "number"} and "exclusiveMinimum" not in schema
        assert params.get_param(name).resolve(-5) == -5
    assert params.get_param("models").resolve([]) == []  # refused by the start task: "choose at least one"
    assert params.get_param("models").resolve(["Salesforce/codet5-base"]) == ["Salesforce/codet5-base"]


def test_retention_runs_after_the_export_only_when_the_plan_asks_for_it(dagbag):
    import dataclasses
    import importlib.util

    assert "prune_checkpoints" not in dagbag.dags["sweep_large"].task_ids  # default: every run keeps its weights
    spec = importlib.util.spec_from_file_location("sweep_tiers_under_test", DAGS_DIR / "sweep_tiers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plan = load_plan()
    plan = dataclasses.replace(plan, scheduling=dataclasses.replace(plan.scheduling, keep_checkpoints_of_runs=3))
    prune = module.build_tier_dag(plan, plan.tiers["large"]).get_task("prune_checkpoints")
    assert prune.upstream_task_ids == {"export"} and prune.trigger_rule == "all_done" and prune.keep_runs == 3
