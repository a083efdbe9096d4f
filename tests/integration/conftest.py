"""The LocalExecutor stack that test_local_stack.py and test_local_stack_ui.py share: started once,
with one tier run every test can read, and stopped by the test marked stops_local_stack, which is
moved after the last other test that uses it (so the stack is not left idling under the rest of
the suite, and is started only once)."""

from __future__ import annotations

import pytest

from devstack.stack import Stack, free_port
from tests.integration.stacks import LARGE_CRON, MODEL, assert_nothing_left, plan_copy, trigger, wait_for_run


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def local_run(local_stack, dataset_dir):
    """sweep_small triggered through the REST API with every other param at its default (offline,
    the local data and the stack's budget) and one model chosen: the other model's tasks are
    skipped. (The whole-DAG test trains both.)"""
    stack, env = local_stack
    run_id = trigger(stack, "sweep_small", {"models": [MODEL]})
    return run_id, wait_for_run(stack, "sweep_small", run_id, timeout_seconds=900)



def pytest_collection_modifyitems(items):
    stopping = [item for item in items if item.get_closest_marker("stops_local_stack")]
    users = [item for item in items if "local_stack" in getattr(item, "fixturenames", ()) and item not in stopping]
    if not stopping or not users:
        return
    for item in stopping:
        items.remove(item)
    at = items.index(users[-1]) + 1
    items[at:at] = stopping
