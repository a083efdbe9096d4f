"""The distributed path on one machine: CeleryExecutor with a real Redis (Debian's redis-server)
and Celery workers, one on queue `gpu` as on a GPU machine and one on the default queue, each with
a SWEEP_HOME of its own as on separate hosts, sharing only Postgres, Redis and an S3 artifact store
(moto's server); the api-server has no reports folder and serves the report from the store. And a
training task that outlives its execution-API token (shortened to 60 s) and still completes."""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import pytest

from devstack.stack import Stack, free_port
from tests.integration.stacks import (
    GROUP,
    MODEL,
    TOKEN_SECONDS,
    assert_nothing_left,
    plan_copy,
    raw_get,
    results,
    task_instances,
    trigger,
    wait_for_run,
)
from tests.s3 import keys, new_bucket, store_env
from training.settings import safe_name


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, dataset_dir, model_root, s3_server):
    home = tmp_path_factory.mktemp("celery-stack")
    store = store_env(s3_server, new_bucket(s3_server))
    hosts = {"celery-gpu-worker-0": {"SWEEP_HOME": str(home / "gpu-host"),
                                     "SWEEP_REPORTS_DIR": str(home / "gpu-host" / "reports")},
             "celery-worker": {"SWEEP_HOME": str(home / "cpu-host"),
                               "SWEEP_REPORTS_DIR": str(home / "cpu-host" / "reports")},
             "api-server": {"SWEEP_REPORTS_DIR": str(home / "api-server" / "reports")}}
    stack = Stack(home, port=free_port(), executor="CeleryExecutor", models_dir=model_root, data_dir=dataset_dir,
                  extra_env={"SWEEP_PLAN_FILE": str(plan_copy(home / "plan", single_point=True)),
                             "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": str(TOKEN_SECONDS), **store},
                  component_env=hosts)
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

    # Two hosts and a store: the training worker's working copy, the report worker's report, both
    # in the store; the api-server, with no reports folder, serves the report from there.
    home = stack.home
    assert list((home / "gpu-host" / "experiments").glob("**/best/model.safetensors"))
    assert not (home / "cpu-host" / "experiments").exists() and not (home / "api-server").exists()
    assert rows[0]["checkpoint_url"].startswith(env["SWEEP_ARTIFACTS_URL"]) and rows[0]["artifacts_missing"] is None
    bucket = env["SWEEP_ARTIFACTS_URL"].removeprefix("s3://").split("/")[0]
    stored = keys(env["AWS_ENDPOINT_URL"], bucket)
    assert any(name.endswith(f"{safe_name(run_id)}/report.html") for name in stored), stored
    path = f"/sweep-reports/sweep_small/{quote(run_id, safe='')}/report.html"
    status, body, _ = raw_get(stack, path)
    assert status == 200 and rows[0]["checkpoint_url"] in body
    assert raw_get(stack, path, token=None)[0] == 401  # behind the login
