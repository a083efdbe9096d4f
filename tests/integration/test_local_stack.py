"""The real stack with the LocalExecutor, beyond dag.test(): separate api-server, scheduler,
dag-processor and triggerer processes on a real Postgres; a tier triggered through the REST API;
invalid form values refused by the server; the UI in headless Chromium; and a stop in the middle
of training that leaves nothing running."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from devstack.stack import Stack, StackError, free_port
from tests.integration.stacks import (ARTIFACTS, GROUP, MODEL, assert_nothing_left, plan_copy, results,
                                      task_instances, trigger, training_processes, wait_for_run)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory, dataset_dir, model_root):
    home = tmp_path_factory.mktemp("local-stack")
    stack = Stack(home, port=free_port(), models_dir=model_root, data_dir=dataset_dir,
                  extra_env={"SWEEP_PLAN_FILE": str(plan_copy(home / "plan"))})
    try:
        env = stack.start()
        yield stack, env
    finally:
        assert_nothing_left(stack)  # also after the last test has stopped it already


@pytest.fixture(scope="module")
def local_run(local_stack, dataset_dir):
    """sweep_small triggered through the REST API with the tiny budget, for one of its models."""
    stack, env = local_stack
    conf = {"budget": "tiny", "models": [MODEL], "dataset": str(dataset_dir)}
    run_id = trigger(stack, "sweep_small", conf)
    return run_id, wait_for_run(stack, "sweep_small", run_id, timeout_seconds=900)


def test_a_tier_triggered_through_the_rest_api_runs_on_the_scheduler(local_stack, local_run):
    stack, env = local_stack
    run_id, run = local_run
    assert run["state"] == "success" and run["run_type"] == "manual"
    instances = task_instances(stack, "sweep_small", run_id)
    trained = [ti for ti in instances if ti["task_id"] == f"{GROUP}.train"]
    skipped = [ti for ti in instances if ti["task_id"] == "microsoft_codebert-base.train"]
    assert len(trained) == 8 and {ti["state"] for ti in trained} == {"success"}
    assert len(skipped) == 8 and {ti["state"] for ti in skipped} == {"skipped"}  # not selected in the form
    assert {ti["pool"] for ti in trained} == {"gpu"} and {ti["queue"] for ti in trained} == {"gpu"}
    names = sorted(ti["rendered_map_index"] for ti in trained)
    assert names[0].startswith("lr=2e-05 bs=16 ep=3"), names
    # the scheduler ran them (not dag.test): each in a task process of its own, one at a time in the pool
    starts = sorted((datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
                    for ti in trained)
    assert all(later[0] >= earlier[1] for earlier, later in zip(starts, starts[1:]))  # pool gpu: 1 slot

    rows = results(stack, env, "sweep_small", run_id)
    assert len(rows) == 8 and {row["model_id"] for row in rows} == {MODEL}
    assert {row["status"] for row in rows} == {"finished"} and {row["run_type"] for row in rows} == {"manual"}
    assert {row["stop_reason"] for row in rows} <= {"completed", "early_stopped"}
    report = Path(env["SWEEP_REPORTS_DIR"]) / "sweep_small"
    html = next(report.glob("*/report.html")).read_text()
    assert MODEL in html and "Recommendation matrix" in html
    verify = next(ti for ti in instances if ti["task_id"] == "verify")
    assert verify["state"] == "success"


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
            page.wait_for_url(f"{stack.url}/**")

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
            page.keyboard.press("Escape")

            page.goto(f"{stack.url}/dags/sweep_small/runs/{run_id}/tasks/{GROUP}.train/mapped")
            expect(page.get_by_text("lr=2e-05 bs=16 ep=3").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-mapped-instances.png"))

            page.goto(f"{stack.url}/dags/sweep_small/runs/{run_id}")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(ARTIFACTS / "airflow-dag-grid.png"))
        finally:
            browser.close()




def test_stopping_the_stack_in_the_middle_of_training_leaves_nothing_running(local_stack, local_run, dataset_dir):
    """Last in this module: it stops the stack. A training subprocess runs in a session of its own
    (so a task's on_kill can end it); stop() must end it too, not only the Airflow components."""
    stack, _ = local_stack
    conf = {"budget": "soak", "models": [MODEL], "dataset": str(dataset_dir)}
    first = trigger(stack, "sweep_small", conf)
    deadline = time.monotonic() + 300
    while not training_processes(stack) and time.monotonic() < deadline:
        time.sleep(1)
    training = training_processes(stack)
    assert training, "no training subprocess started within 5 minutes"

    # One active run per tier: a second trigger waits instead of competing for the GPUs.
    second = trigger(stack, "sweep_small", conf)
    time.sleep(10)  # several scheduler loops
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{first}")["state"] == "running"
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{second}")["state"] == "queued"
    stopped = assert_nothing_left(stack)
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "postgres"} <= set(stopped)
    assert all(not Path(f"/proc/{pid}").exists() for pid in training)
