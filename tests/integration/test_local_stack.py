"""The real stack with the LocalExecutor, beyond dag.test(): separate api-server, scheduler,
dag-processor and triggerer processes on a real Postgres; a tier triggered through the REST API;
invalid form values refused by the server; the UI in headless Chromium; and a stop in the middle
of training that leaves nothing running."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.stack import Stack, StackError, free_port
from tests.integration.stacks import (
    ARTIFACTS,
    GROUP,
    MODEL,
    assert_nothing_left,
    assert_skipped_before_training,
    plan_copy,
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

# The large tier runs nightly at a time three hours ago: enabling it makes Airflow schedule that
# missed cron point at once, the case the first task must skip.
THREE_HOURS_AGO = datetime.now(UTC) - timedelta(hours=3)
LARGE_CRON = f"{THREE_HOURS_AGO.minute} {THREE_HOURS_AGO.hour} * * *"


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory, dataset_dir, model_root):
    home = tmp_path_factory.mktemp("local-stack")
    plan = plan_copy(home / "plan", large_schedule=LARGE_CRON)
    # The stack's offline defaults point the form at the local data; the tests' budget is tiny (make
    # airflow's is demo) so that a run of every default stays short.
    stack = Stack(home, port=free_port(), models_dir=model_root, data_dir=dataset_dir,
                  extra_env={"SWEEP_PLAN_FILE": str(plan), "SWEEP_DEFAULT_BUDGET": "tiny"})
    try:
        env = stack.start()
        yield stack, env
    finally:
        assert_nothing_left(stack)  # also after the last test has stopped it already


@pytest.fixture(scope="module")
def local_run(local_stack, dataset_dir):
    """sweep_small triggered through the REST API with every other param at its default (offline,
    the local data and the stack's budget) and one model chosen: the other model's tasks are
    skipped. (The whole-DAG test trains both.)"""
    stack, env = local_stack
    run_id = trigger(stack, "sweep_small", {"models": [MODEL]})
    return run_id, wait_for_run(stack, "sweep_small", run_id, timeout_seconds=900)


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
    report = Path(env["SWEEP_REPORTS_DIR"]) / "sweep_small"
    html = next(report.glob("*/report.html")).read_text()
    assert MODEL in html and "Recommendation matrix" in html
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
    assert refused.value.code == 401
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
    """A folder that does not exist and a key that is not a param: the form accepts both (Airflow
    passes unknown keys through), the start task refuses before any training, and the reason is
    the first line the task logs and the run's note."""
    stack, _ = local_stack
    for conf, reason in [({"models": [MODEL], "dataset": "/no/such/folder"},
                          "dataset = '/no/such/folder': no such folder"),
                         ({"models": [MODEL], "learning_rate": "fast"},
                          "learning_rate = 'fast': not a param of this DAG, which would ignore it; its params are "
                          "budget, dataset, models")]:
        run_id = trigger(stack, "sweep_small", conf)
        run = wait_for_run(stack, "sweep_small", run_id, timeout_seconds=300)
        assert run["state"] == "failed"
        assert run["note"].startswith("refused before any training: ") and reason in run["note"], run["note"]
        instances = {ti["task_id"]: ti["state"] for ti in task_instances(stack, "sweep_small", run_id)}
        assert instances["start"] == "failed"
        assert {state for task, state in instances.items() if ".train" in task} == {"upstream_failed"}
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


def test_the_api_server_refuses_invalid_form_values_and_names_them(local_stack):
    stack, _ = local_stack
    for conf, named in [({"max_steps": 0}, "max_steps"), ({"budget": "huge"}, "budget"),
                        ({"models": ["Salesforce/codet5-large"]}, "models")]:
        with pytest.raises(StackError, match=f"HTTP 400.*param {named}"):
            stack.api("POST", "dags/sweep_small/dagRuns", {"logical_date": None, "conf": conf})


def test_the_ui_in_chromium_lists_the_tiers_shows_the_form_and_names_mapped_instances(local_stack, local_run):
    from playwright.sync_api import expect, sync_playwright

    stack, _ = local_stack
    run_id, _ = local_run
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{stack.url}/auth/login")  # SimpleAuthManager's login form
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(stack.admin_password())
            page.get_by_role("button", name="Sign in").click()
            # The login page itself matches "<url>/**": wait until sign-in has navigated away from it,
            # or the next goto can race the redirect and be aborted (net::ERR_ABORTED, seen once in CI).
            page.wait_for_url(lambda url: url.startswith(stack.url) and "/auth/login" not in url)
            page.wait_for_load_state()

            page.goto(f"{stack.url}/dags")
            for dag_id in ("sweep_small", "sweep_medium", "sweep_large"):
                expect(page.get_by_text(dag_id, exact=True).first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-dags.png"))

            page.goto(f"{stack.url}/dags/sweep_small")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            # one field per Param, each with its title and help text, the widget its schema asks for
            expect(dialog.get_by_role("combobox", name="Budget")).to_be_visible(timeout=30_000)
            expect(dialog.get_by_role("group").filter(has_text="Dataset").get_by_role("textbox")).to_be_visible()
            models = dialog.get_by_role("group").filter(has_text="which models of the tier to train")
            expect(models.get_by_role("combobox", name="Select one or multiple values")).to_be_visible()  # multi
            for model in ("microsoft/codebert-base", "Salesforce/codet5-small"):  # default: the whole tier
                expect(models.get_by_text(model, exact=True)).to_be_visible()
            expect(dialog.get_by_role("spinbutton", name="Step cap")).to_have_value("")
            expect(dialog.get_by_role("spinbutton", name="Seed")).to_have_value("42")
            expect(dialog.get_by_role("checkbox", name="Reuse earlier results")).not_to_be_checked()
            expect(dialog.get_by_text("full = the plan as written; demo and tiny shrink data")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "airflow-trigger-form.png"))

            # An out-of-range step cap stays as typed and is refused in the form, not clamped to 1.
            runs_before = stack.api("GET", "dags/sweep_small/dagRuns")["total_entries"]
            step_cap = dialog.get_by_role("spinbutton", name="Step cap")
            step_cap.fill("-5")
            step_cap.press("Tab")
            expect(step_cap).to_have_value("-5")
            dialog.get_by_role("button", name="Trigger").click()
            expect(dialog.get_by_text(re.compile(r"-5 is less than or equal to the minimum of 0"))).to_be_visible(
                timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-trigger-refused.png"))
            assert stack.api("GET", "dags/sweep_small/dagRuns")["total_entries"] == runs_before
            page.keyboard.press("Escape")

            page.goto(f"{stack.url}/dags/sweep_small/runs/{run_id}/tasks/{GROUP}.train/mapped")
            expect(page.get_by_text("lr=2e-05 bs=16 ep=3").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-mapped-instances.png"))

            page.goto(f"{stack.url}/dags/sweep_small/runs/{run_id}")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(ARTIFACTS / "airflow-dag-grid.png"))

            # The report, one click from the report task: its "Report" link opens it, signed in.
            page.goto(f"{stack.url}/dags/sweep_small/runs/{run_id}/tasks/report")
            page.get_by_role("link", name="Details", exact=True).click()  # the task's extra links are there
            link = page.get_by_role("link", name="Report", exact=True)
            expect(link).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-report-link.png"))
            link.click()  # same origin as the UI: it opens in place, with the session's login
            page.wait_for_url(f"{stack.url}/sweep-reports/**", timeout=30_000)
            expect(page.get_by_role("heading", name="Sweep report: sweep_small")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Recommendation matrix").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "airflow-report-opened.png"))

            page.goto(f"{stack.url}/sweep-reports/")  # the index, also in the UI's navigation
            expect(page.get_by_role("link", name=run_id, exact=True)).to_be_visible(timeout=30_000)
        finally:
            browser.close()




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
    assert next_run == THREE_HOURS_AGO.replace(second=0, microsecond=0) + timedelta(days=1)

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
    assert next_run == THREE_HOURS_AGO.replace(second=0, microsecond=0) + timedelta(days=1)  # tonight's
    stack.api("PATCH", "dags/sweep_large", {"is_paused": True})


def test_stopping_the_stack_in_the_middle_of_training_leaves_nothing_running(local_stack, local_run, dataset_dir):
    """Last in this module: it stops the stack. A training subprocess runs in a session of its own
    (so a task's on_kill can end it); stop() must end it too, not only the Airflow components."""
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
