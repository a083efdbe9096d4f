"""The distributed path on one machine: CeleryExecutor with a real Redis (Debian's redis-server)
and Celery workers, one on queue `gpu` as on a GPU machine and one on the default queue; and a
training task that outlives its execution-API token (shortened to 60 s) and still completes."""

from __future__ import annotations

import subprocess

import pytest

from devstack.stack import Stack, free_port
from tests.integration.stacks import (
    GROUP,
    MODEL,
    TOKEN_SECONDS,
    assert_nothing_left,
    plan_copy,
    results,
    task_instances,
    trigger,
    wait_for_run,
)


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, dataset_dir, model_root):
    home = tmp_path_factory.mktemp("celery-stack")
    stack = Stack(home, port=free_port(), executor="CeleryExecutor", models_dir=model_root, data_dir=dataset_dir,
                  extra_env={"SWEEP_PLAN_FILE": str(plan_copy(home / "plan", single_point=True)),
                             "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": str(TOKEN_SECONDS)})
    try:
        env = stack.start()
        yield stack, env
    finally:
        assert_nothing_left(stack)


def test_celery_workers_run_a_training_task_longer_than_its_token(celery_stack, dataset_dir):
    stack, env = celery_stack
    lifetime = subprocess.run(["airflow", "config", "get-value", "execution_api", "jwt_expiration_time"], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
    assert lifetime == str(TOKEN_SECONDS)  # what every component of this stack runs with
    conf = {"budget": "soak", "models": [MODEL], "dataset": str(dataset_dir)}
    run_id = trigger(stack, "sweep_small", conf)
    run = wait_for_run(stack, "sweep_small", run_id, timeout_seconds=900)
    instances = task_instances(stack, "sweep_small", run_id)
    assert run["state"] == "success", instances
    train = next(ti for ti in instances if ti["task_id"] == f"{GROUP}.train")
    assert train["state"] == "success" and train["queue"] == "gpu" and train["try_number"] == 1
    assert train["duration"] > TOKEN_SECONDS + 10, "the task ended before its first token expired"

    rows = results(stack, env, "sweep_small", run_id)
    assert [row["stop_reason"] for row in rows] == ["timeout"]  # trained until the soak budget's time cap
    # The task went through the broker to the worker on queue gpu, not to the default one.
    gpu_log = (stack.run_dir / "celery-gpu-worker-0.log").read_text()
    default_log = (stack.run_dir / "celery-worker.log").read_text()
    assert f"{GROUP}.train" in gpu_log and f"{GROUP}.train" not in default_log
    assert "report" in default_log
