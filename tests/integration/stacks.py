"""Helpers of the multi-process tests: a plan copy the stacks run, triggering through the REST
API, waiting for a run, reading its results, and checking that nothing is left running."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from devstack.stack import Stack
from training.plan import DEFAULT_PLAN_PATH

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MODEL = "Salesforce/codet5-small"
GROUP = "Salesforce_codet5-small"  # its task group in each tier DAG
# The large tier runs nightly at a time three hours ago on the local stack: enabling it makes
# Airflow schedule that missed cron point at once, the case the first task must skip.
LARGE_CRON_POINT = datetime.now(UTC) - timedelta(hours=3)
LARGE_CRON = f"{LARGE_CRON_POINT.minute} {LARGE_CRON_POINT.hour} * * *"
TOKEN_SECONDS = 60  # the execution-API token's lifetime in the Celery stack (600 s by default)
# A budget that trains until its time cap: no evaluation (so no early stopping) before it, then the
# final model is evaluated. A step cap only ever shortens a run, so it is the single-point grid's
# 1,000 epochs (plan_copy) that keep a run going for the whole cap whatever the machine's speed;
# on the real grid a run is its epochs long.
SOAK_BUDGET = f"""
[budgets.soak]
max_train_samples = 384
max_eval_samples = 96
max_length = 96
eval_steps = 1000000
logging_steps = 10
max_train_seconds = {TOKEN_SECONDS + 30}
"""


def plan_copy(folder: Path, single_point: bool = False, large_schedule: str = "none") -> Path:
    """The real plan, triggered only (a nightly schedule would start a full-budget run as soon as a
    DAG is unpaused), with a soak budget; with single_point, the small tier's grid is one combination
    of 1,000 epochs (what the soak budget's time cap ends);
    large_schedule gives the large tier a cron schedule of the test's choosing."""
    text = DEFAULT_PLAN_PATH.read_text()
    for hour in (1, 2):
        text = text.replace(f'schedule = "0 {hour} * * *"', 'schedule = "none"')
    text = text.replace('schedule = "0 3 * * *"', f'schedule = "{large_schedule}"')
    text = text.replace("[budgets.full]\n", "[budgets.full]\n" + SOAK_BUDGET, 1)
    if single_point:
        small_grid = text.index("[tiers.small.grid]")
        end = text.index("[tiers.medium]")
        text = text[:small_grid] + ("[tiers.small.grid]\nlearning_rate = [5e-5]\nbatch_size = [16]\n"
                                    "num_epochs = [1000]\nweight_decay = [0.01]\ngradient_accumulation_steps = [1]\n\n"
                                    ) + text[end:]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.toml"
    path.write_text(text)
    return path


def trigger(stack: Stack, dag_id: str, conf: dict) -> str:
    stack.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
    run = stack.api("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    return run["dag_run_id"]


def wait_for_run(stack: Stack, dag_id: str, run_id: str, timeout_seconds: float) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        run = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(5)
    pytest.fail(f"{dag_id} run {run_id} did not finish within {timeout_seconds:.0f} s; logs in {stack.run_dir}")


def task_instances(stack: Stack, dag_id: str, run_id: str) -> list[dict]:
    return stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]


def results(stack: Stack, env: dict, dag_id: str, run_id: str) -> list[dict]:
    engine = sa.create_engine(env["SWEEP_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT * FROM experiments WHERE dag_id = :d AND run_id = :r"),
                                      {"d": dag_id, "r": run_id}).mappings().all()
        return [dict(row) for row in rows]
    finally:
        engine.dispose()


def assert_nothing_left(stack: Stack) -> list[str]:
    stopped = stack.stop()
    assert stack.leftovers() == [], "processes of the stack survived stop()"
    assert not list(stack.run_dir.glob("*.pid")) and not any(stack.running(name) for name in stack.components())
    return stopped


def training_processes(stack: Stack) -> list[int]:
    """Training subprocesses (python -m training run-experiment) of this stack now running."""
    found = []
    for pid in stack.leftovers():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run-experiment" in command:
            found.append(pid)
    return found


def scheduled_runs(stack: Stack, dag_id: str) -> list[dict]:
    runs = stack.api("GET", f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
    return [run for run in runs if run["run_type"] == "scheduled"]


def wait_for_scheduled_runs(stack: Stack, dag_id: str, count: int, timeout_seconds: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        runs = scheduled_runs(stack, dag_id)
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        time.sleep(3)
    pytest.fail(f"{dag_id}: {count} scheduled run(s) did not finish within {timeout_seconds:.0f} s")


def assert_skipped_before_training(stack: Stack, env: dict, dag_id: str, run: dict) -> None:
    instances = {ti["task_id"]: ti for ti in task_instances(stack, dag_id, run["dag_run_id"])}
    assert instances["start"]["state"] == "success", instances["start"]
    assert {ti["state"] for name, ti in instances.items() if name != "start"} == {"skipped"}, instances
    assert results(stack, env, dag_id, run["dag_run_id"]) == []  # no experiment started


def scheduler_passes(env: dict, dag_id: str, run_id: str, passes: int, timeout_seconds: float = 120) -> None:
    """Wait until the scheduler has examined a running run `passes` more times. Each examination is
    one scheduling loop, which first starts every queued run that max_active_runs allows: what a
    test of "stays queued" must wait for, instead of a guessed sleep."""
    engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    query = sa.text("SELECT last_scheduling_decision FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id")
    seen, deadline = set(), time.monotonic() + timeout_seconds
    try:
        while len(seen) <= passes:
            if time.monotonic() > deadline:
                pytest.fail(f"{dag_id} {run_id}: {len(seen)} scheduler pass(es) in {timeout_seconds:.0f} s, "
                            f"not {passes}")
            with engine.connect() as connection:
                seen.add(connection.execute(query, {"dag_id": dag_id, "run_id": run_id}).scalar())
            time.sleep(0.5)
    finally:
        engine.dispose()


def raw_get(stack, path: str, token: str | None = "stack", accept: str | None = None) -> tuple[int, str, dict]:
    """A GET with the path exactly as given (no client-side normalising of dots), signed in unless
    token is None."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(stack.url)
    headers = {"Authorization": f"Bearer {stack.token()}"} if token else {}
    if accept:
        headers["Accept"] = accept
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace"), {
            name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
