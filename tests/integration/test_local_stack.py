"""The real stack with the LocalExecutor, beyond dag.test(): separate api-server, scheduler,
dag-processor and triggerer processes on a real Postgres; a tier triggered through the REST API;
invalid form values refused by the server; and a stop in the middle of training that leaves
nothing running. The UI in headless Chromium is test_local_stack_ui.py, on the same stack."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.stack import StackError
from tests.integration.stacks import (
    GROUP,
    LARGE_CRON_POINT,
    MODEL,
    assert_nothing_left,
    assert_skipped_before_training,
    raw_get,
    results,
    scheduled_runs,
    scheduler_passes,
    task_instances,
    training_processes,
    trigger,
    wait_for_run,
    wait_for_scheduled_runs,
)
from training.settings import safe_name


def test_a_tier_triggered_through_the_rest_api_runs_on_the_scheduler(local_stack, local_run, dataset_dir):
    stack, env = local_stack
    run_id, run = local_run
    assert run["state"] == "success" and run["run_type"] == "manual"
    instances = task_instances(stack, "sweep_small", run_id)
    every = [ti for ti in instances if ti["task_id"].endswith(".train")]
    trained = [ti for ti in every if ti["task_id"].startswith(GROUP + ".")]
    assert len(trained) == 8 and {ti["state"] for ti in trained} == {"success"}
    assert {ti["state"] for ti in every if ti not in trained} == {"skipped"}  # the model not chosen
    start = next(ti for ti in instances if ti["task_id"] == "start")
    log = stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}/taskInstances/start/logs/1?full_content=true")
    assert start["state"] == "success" and "params of this run" in json.dumps(log)
    assert str(dataset_dir) in json.dumps(log) and "'budget': 'tiny'" in json.dumps(log)
    assert {ti["pool"] for ti in trained} == {"gpu"} and {ti["queue"] for ti in trained} == {"gpu"}
    names = sorted(ti["rendered_map_index"] for ti in trained)
    assert names[0].startswith("lr=2e-05 bs=16 ep=3"), names
    # the scheduler ran them (not dag.test): each in a task process of its own, one at a time in the pool
    starts = sorted((datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
                    for ti in trained)
    assert all(later[0] >= earlier[1] for earlier, later in zip(starts, starts[1:]))  # pool gpu: 1 slot

    rows = results(stack, env, "sweep_small", run_id)
    assert len(rows) == 8 and {row["model_id"] for row in rows} == {MODEL}
    assert {row["dataset_source"] for row in rows} == {str(dataset_dir)} and {row["budget"] for row in rows} == {"tiny"}
    assert {row["status"] for row in rows} == {"finished"} and {row["run_type"] for row in rows} == {"manual"}
    assert {row["stop_reason"] for row in rows} <= {"completed", "early_stopped"}
    folder = Path(env["SWEEP_REPORTS_DIR"]) / "sweep_small" / safe_name(run_id)
    html = (folder / "report.html").read_text()
    assert MODEL in html and "Recommendation matrix" in html
    summary = json.loads((folder / "summary.json").read_text())  # the reports index's row
    assert (summary["tier"], summary["status"], summary["params"]["budget"], summary["experiments"]) == (
        "small", "success", "tiny", 8)
    log = stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}/taskInstances/report/logs/1?full_content=true")
    events = [e["event"] for e in log["content"] if isinstance(e, dict) and "sweep_airflow" in str(e.get("logger"))]
    assert events[-1] == f"report: {stack.url}/sweep-reports/sweep_small/{safe_name(run_id)}/report.html", events
    assert run["note"] == f"[Report]({stack.url}/sweep-reports/sweep_small/{safe_name(run_id)}/report.html)"
    verify = next(ti for ti in instances if ti["task_id"] == "verify")
    assert verify["state"] == "success"


def test_the_report_is_served_behind_the_login_and_linked_from_its_task(local_stack, local_run):
    stack, env = local_stack
    run_id, _ = local_run
    links = stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}/taskInstances/report/links")["extra_links"]
    assert links["Report"].startswith(f"{stack.url}/sweep-reports/sweep_small/"), links  # http: the UI shows it
    anonymous = urllib.request.Request(links["Report"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=30)
    assert refused.value.code == 401  # a script gets the status
    browser = raw_get(stack, links["Report"].removeprefix(stack.url), token=None, accept="text/html")
    assert browser[0] == 303 and browser[2]["location"].startswith("/auth/login?next="), browser  # a browser: login
    forged = urllib.request.Request(links["Report"], headers={"Authorization": "Bearer not-a-token"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=30)
    assert refused.value.code in (401, 403)
    signed_in = urllib.request.Request(links["Report"], headers={"Authorization": f"Bearer {stack.token()}"})
    with urllib.request.urlopen(signed_in, timeout=30) as response:
        assert response.status == 200 and "Recommendation matrix" in response.read().decode()
    outside = urllib.request.Request(f"{stack.url}/sweep-reports/sweep_small/..%2F..%2Fetc/passwd",
                                     headers={"Authorization": f"Bearer {stack.token()}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(outside, timeout=30)
    assert refused.value.code == 404
    # Sent as-is (curl --path-as-is), as a browser never would: a report two folders above the
    # reports folder must stay out of reach.
    reports_dir = Path(env["SWEEP_REPORTS_DIR"])
    (reports_dir.parent.parent / "report.html").write_text("outside the reports folder")
    for path in ("/sweep-reports/../../report.html", "/sweep-reports/%2e%2e/%2e%2e/report.html",
                 "/sweep-reports/sweep_small/../../report.html"):
        status, body, _ = raw_get(stack, path)
        assert status == 404 and "outside the reports folder" not in body, (path, status)
    status, body, headers = raw_get(stack, links["Report"].removeprefix(stack.url))
    assert status == 200 and headers["x-content-type-options"] == "nosniff"
    assert "script-src 'none'" in headers["content-security-policy"]


def test_a_refused_run_says_why_in_its_first_log_line_and_on_the_run(local_stack):
    """A folder that does not exist, no model, and a key that is not a param (a step cap out of
    range: test_local_stack_ui.py): the server accepts them (Airflow passes unknown keys through),
    the start task refuses before any training, and the reason is the first line the task logs and
    the run's note, on the page the UI opens after Trigger."""
    stack, _ = local_stack
    for conf, reason in [({"models": [MODEL], "dataset": "/no/such/folder"},
                          "dataset = '/no/such/folder': no such folder"),
                         ({"models": []}, "models = []: choose at least one of"),
                         ({"models": [MODEL], "learning_rate": "fast"},
                          "learning_rate = 'fast': not a param of this DAG, which would ignore it; its params are "
                          "budget, dataset, models")]:
        run_id = trigger(stack, "sweep_small", conf)
        run = wait_for_run(stack, "sweep_small", run_id, timeout_seconds=300)
        assert run["state"] == "failed"
        assert run["note"].startswith("refused before any training: ") and reason in run["note"], run["note"]
        report = f"{stack.url}/sweep-reports/sweep_small/{safe_name(run_id)}/report.html"
        assert run["note"].endswith(f"[Report]({report})"), run["note"]
        instances = {ti["task_id"]: ti["state"] for ti in task_instances(stack, "sweep_small", run_id)}
        assert instances["start"] == "failed"
        assert {state for task, state in instances.items() if ".train" in task} == {"upstream_failed"}
        assert instances["verify"] == "failed"  # the task the run's state follows: never a success
        log = stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}/taskInstances/start/logs/1?full_content=true")
        ours = [entry["event"] for entry in log["content"]
                if isinstance(entry, dict) and str(entry.get("logger", "")).startswith("sweep_airflow")]
        assert ours and reason in ours[0], ours[:3]  # before the params it names, and before Airflow's traceback


def test_the_api_server_listens_on_this_machine_only(local_stack):
    """make airflow binds the UI to 127.0.0.1 unless SWEEP_AIRFLOW_HOST asks otherwise."""
    stack, _ = local_stack
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == stack.port:  # 0A: LISTEN
                listening.add(address)
    assert listening == {"0100007F"}, listening  # 127.0.0.1, and not 0.0.0.0 or ::


def test_the_api_server_refuses_values_outside_the_forms_choices_and_names_them(local_stack):
    """What the form offers as choices (budgets, models) or types (a number) is checked by the
    server before a run exists; ranges are the start task's (the test above)."""
    stack, _ = local_stack
    for conf, named in [({"budget": "huge"}, "budget"), ({"models": ["Salesforce/codet5-large"]}, "models"),
                        ({"max_steps": "eight"}, "max_steps")]:
        with pytest.raises(StackError, match=f"HTTP 400.*param {named}"):
            stack.api("POST", "dags/sweep_small/dagRuns", {"logical_date": None, "conf": conf})


def test_enabling_a_nightly_dag_never_starts_training_now(local_stack):
    """A first enable, and an enable again after missed nights: the runs Airflow makes for missed
    cron points are skipped by the first task; the next real run is at the next cron point."""
    import sqlalchemy as sa

    stack, env = local_stack
    stack.api("PATCH", "dags/sweep_large", {"is_paused": False})  # what the UI's toggle does
    [first] = wait_for_scheduled_runs(stack, "sweep_large", 1)
    assert_skipped_before_training(stack, env, "sweep_large", first)
    log = stack.api("GET",
                    f"dags/sweep_large/dagRuns/{first['dag_run_id']}/taskInstances/start/logs/1?full_content=true")
    assert "beyond the plan's tolerance" in json.dumps(log)
    next_run = datetime.fromisoformat(stack.api("GET", "dags/sweep_large")["next_dagrun_run_after"])
    assert next_run == LARGE_CRON_POINT.replace(second=0, microsecond=0) + timedelta(days=1)

    # Paused, and three nights pass: the DAG's next run is three nights ago. (Its one run is removed
    # rather than moved: a run keeps its run id, which the scheduler would make again for that night.)
    stack.api("PATCH", "dags/sweep_large", {"is_paused": True})
    engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM dag_run WHERE dag_id = 'sweep_large'"))
        connection.execute(sa.text(
            "UPDATE dag SET next_dagrun = next_dagrun - interval '3 days', next_dagrun_create_after = "
            "next_dagrun_create_after - interval '3 days', next_dagrun_data_interval_start = "
            "next_dagrun_data_interval_start - interval '3 days', next_dagrun_data_interval_end = "
            "next_dagrun_data_interval_end - interval '3 days' WHERE dag_id = 'sweep_large'"))
    engine.dispose()
    stack.api("PATCH", "dags/sweep_large", {"is_paused": False})
    # The scheduler makes a run for the missed night it had next, then one for the latest missed cron
    # point; wait until its next run is in the future again and every run it made has finished.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        next_run = datetime.fromisoformat(stack.api("GET", "dags/sweep_large")["next_dagrun_run_after"])
        runs = scheduled_runs(stack, "sweep_large")
        if next_run > datetime.now(UTC) and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(3)
    assert runs and all(datetime.fromisoformat(r["run_after"]) < datetime.now(UTC) - timedelta(hours=2)
                        for r in runs), runs  # runs for missed nights only, each of them skipped
    for run in runs:
        assert_skipped_before_training(stack, env, "sweep_large", run)
    assert not training_processes(stack)
    assert next_run == LARGE_CRON_POINT.replace(second=0, microsecond=0) + timedelta(days=1)  # tonight's
    stack.api("PATCH", "dags/sweep_large", {"is_paused": True})


@pytest.mark.stops_local_stack
def test_stopping_the_stack_in_the_middle_of_training_leaves_nothing_running(local_stack, local_run, dataset_dir):
    """Last of the tests on the local stack (conftest.py orders it): it stops the stack. A training
    subprocess runs in a session of its own (so a task's on_kill can end it); stop() must end it
    too, not only the Airflow components."""
    stack, env = local_stack
    conf = {"budget": "soak", "models": [MODEL], "dataset": str(dataset_dir)}
    first = trigger(stack, "sweep_small", conf)
    deadline = time.monotonic() + 300
    while not training_processes(stack) and time.monotonic() < deadline:
        time.sleep(1)
    training = training_processes(stack)
    assert training, "no training subprocess started within 5 minutes"

    # One active run per tier: a second trigger waits instead of competing for the GPUs.
    second = trigger(stack, "sweep_small", conf)
    scheduler_passes(env, "sweep_small", first, passes=3)  # each would have started the second if allowed
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{first}")["state"] == "running"
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{second}")["state"] == "queued"
    stopped = assert_nothing_left(stack)
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "postgres"} <= set(stopped)
    assert all(not Path(f"/proc/{pid}").exists() for pid in training)
