"""The Airflow UI in headless Chromium on the shared local stack (conftest.py), as a user meets it:
the tier list, the trigger form and what it does with what is typed key by key, mapped instances
named by their hyperparameters, the report one click from its task, and the reports index."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.integration.stacks import ARTIFACTS, GROUP
from training.settings import safe_name

ADVANCED = re.compile(r"^Advanced \(seed")


@pytest.fixture(scope="module")
def page(local_stack):
    """A signed-in page of the UI (SimpleAuthManager's admin)."""
    from playwright.sync_api import sync_playwright

    stack, _ = local_stack
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{stack.url}/auth/login")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(stack.admin_password())
            page.get_by_role("button", name="Sign in").click()
            # The login page itself matches "<url>/**": wait until sign-in has navigated away from it,
            # or the next goto can race the redirect and be aborted (net::ERR_ABORTED, seen once in CI).
            page.wait_for_url(lambda url: url.startswith(stack.url) and "/auth/login" not in url)
            page.wait_for_load_state()
            yield page
        finally:
            browser.close()


def trigger_dialog(page, url: str, dag_id: str):
    from playwright.sync_api import expect

    page.goto(f"{url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("combobox", name="Budget")).to_be_visible(timeout=30_000)
    return dialog


def test_the_tiers_and_the_trigger_form(local_stack, page):
    from playwright.sync_api import expect

    stack, _ = local_stack
    page.goto(f"{stack.url}/dags")
    for dag_id in ("sweep_small", "sweep_medium", "sweep_large"):
        expect(page.get_by_text(dag_id, exact=True).first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "airflow-dags.png"))

    dialog = trigger_dialog(page, stack.url, "sweep_small")
    # one field per Param, each with its title and help text, the widget its schema asks for
    expect(dialog.locator("#element_dataset")).to_be_visible()
    models = dialog.get_by_role("group").filter(has_text="which models of the tier to train")
    expect(models.get_by_role("combobox", name="Select one or multiple values")).to_be_visible()  # multi
    for model in ("microsoft/codebert-base", "Salesforce/codet5-small"):  # default: the whole tier
        expect(models.get_by_text(model, exact=True)).to_be_visible()
    expect(dialog.locator("#element_max_steps")).to_have_value("")
    expect(dialog.get_by_text("full = the plan as written; demo and tiny shrink data")).to_be_visible()
    # What a first run rarely changes waits in a collapsed section, so the form stays short.
    expect(dialog.locator("#element_seed")).not_to_be_visible()
    dialog.get_by_text(ADVANCED).click()
    expect(dialog.locator("#element_seed")).to_have_value("42")
    expect(dialog.get_by_role("checkbox", name="Reuse earlier results")).not_to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "airflow-trigger-form.png"))
    page.keyboard.press("Escape")


def test_a_number_typed_key_by_key_reaches_the_run_as_typed_or_is_refused_at_the_field(local_stack, page):
    """Typed, not pasted: the form's number field once turned "-5" into NaN and then empty, and the
    run started with no step cap. Now what is not a number is refused at the field, with Trigger
    disabled; a number out of range reaches the run as typed and the run fails before any training
    with the reason as its note, on the page the UI opens; a valid one reaches the run as typed."""
    from playwright.sync_api import expect

    stack, _ = local_stack
    dialog = trigger_dialog(page, stack.url, "sweep_small")
    step_cap, trigger = dialog.locator("#element_max_steps"), dialog.get_by_role("button", name="Trigger")
    step_cap.click()
    page.keyboard.type("-")
    expect(dialog.get_by_text("Value must be one of: null, integer, number")).to_be_visible()
    expect(trigger).to_be_disabled()
    page.keyboard.type("5")
    expect(step_cap).to_have_value("-5")
    expect(trigger).to_be_enabled()
    trigger.click()
    page.wait_for_url(re.compile(r".*/dags/sweep_small/runs/manual__.*"), timeout=30_000)
    run_id = page.url.rsplit("/runs/", 1)[1]
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}")["conf"]["max_steps"] == -5  # as typed
    note = page.get_by_text("refused before any training: max_steps = -5: must be a whole number from 1 to")
    for _ in range(40):  # the run page shows the note once the run has failed (seconds)
        if note.count():
            break
        page.wait_for_timeout(3000)
        page.reload()
    expect(note).to_be_visible(timeout=10_000)
    assert stack.api("GET", f"dags/sweep_small/dagRuns/{run_id}")["state"] == "failed"
    page.screenshot(path=str(ARTIFACTS / "airflow-refused-run.png"))

    # Letters are refused at the field; a valid number, typed, reaches the run. On a paused tier,
    # without unpausing it, so the run waits and trains nothing (and is deleted after).
    dialog = trigger_dialog(page, stack.url, "sweep_medium")
    dialog.get_by_text(re.compile("^Unpause sweep_medium")).click()
    expect(dialog.get_by_role("checkbox", name=re.compile("Unpause"))).not_to_be_checked()
    step_cap, trigger = dialog.locator("#element_max_steps"), dialog.get_by_role("button", name="Trigger")
    step_cap.click()
    page.keyboard.type("eight")
    expect(dialog.get_by_text("Value must be one of: null, integer, number")).to_be_visible()
    expect(trigger).to_be_disabled()
    step_cap.press("Control+a")
    page.keyboard.type("8")
    dialog.get_by_text(ADVANCED).click()
    dialog.locator("#element_max_gpu_hours").click()
    page.keyboard.type("0.5")
    expect(trigger).to_be_enabled()
    trigger.click()
    page.wait_for_url(re.compile(r".*/dags/sweep_medium/runs/manual__.*"), timeout=30_000)
    run_id = page.url.rsplit("/runs/", 1)[1]
    conf = stack.api("GET", f"dags/sweep_medium/dagRuns/{run_id}")["conf"]
    stack.api("DELETE", f"dags/sweep_medium/dagRuns/{run_id}")
    assert (conf["max_steps"], conf["max_gpu_hours"]) == (8, 0.5)


def test_mapped_instances_are_named_and_the_report_is_one_click_from_its_task(local_stack, local_run, page):
    from playwright.sync_api import expect

    stack, env = local_stack
    run_id, _ = local_run
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
    link_url = link.get_attribute("href")
    link.click()  # same origin as the UI: it opens in place, with the session's login
    page.wait_for_url(f"{stack.url}/sweep-reports/**", timeout=30_000)
    expect(page.get_by_role("heading", name="Sweep report: sweep_small")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Recommendation matrix").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "airflow-report-opened.png"))

    page.goto(f"{stack.url}/sweep-reports/")  # the index, also in the UI's navigation
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=run_id, exact=True))
    expect(row).to_be_visible(timeout=30_000)
    summary = json.loads((Path(env["SWEEP_REPORTS_DIR"]) / "sweep_small" / safe_name(run_id) / "summary.json")
                         .read_text())
    # tier, budget, state, experiments, and the report's most accurate model (none, "–", when the
    # tiny budget's stand-ins beat no constant answer)
    for column in ("small", "tiny", "success", "8", summary["most_accurate"] or "–"):
        expect(row.get_by_role("cell", name=column, exact=True)).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "sweep-reports-index.png"))
    refused = page.get_by_role("row").filter(has_text="refused")
    expect(refused.first).to_be_visible()  # the step cap of -5 above: refused before any training
    row.get_by_role("link", name="run", exact=True).click()
    page.wait_for_url(f"{stack.url}/dags/sweep_small/runs/**", timeout=30_000)

    # Signed out (a browser of its own, so the signed-in UI cannot renew the session meanwhile), a
    # report's address leads to the login page, which returns to the report after signing in.
    signed_out = page.context.browser.new_context()
    try:
        other = signed_out.new_page()
        other.goto(link_url)
        other.wait_for_url(re.compile(r".*/auth/login.*"), timeout=30_000)
        assert "next=" in other.url
        expect(other.get_by_label("Username")).to_be_visible(timeout=30_000)
    finally:
        signed_out.close()
