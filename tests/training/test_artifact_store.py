"""Many hosts, one store (decision 20): workers with separate, empty homes share only Postgres and
an S3 API server (moto's, on 127.0.0.1). A retry on another host resumes from the store, two hosts
never train one experiment at once, a report rendered on a third host finds every prediction and
is served from the store, and a store outage loses nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.s3 import Outage, keys, store_env
from tests.training.helpers import cli_command, run_cli, spec_for

pytestmark = pytest.mark.slow


def host(tmp_path, name, model_root, database, store) -> dict:
    """A worker's environment: its own empty home, the shared database and store."""
    return {"SWEEP_MODEL_ROOT": str(model_root), "SWEEP_HOME": str(tmp_path / name / "home"),
            "SWEEP_DATABASE_URL": database, **store}


def bucket_of(store: dict) -> str:
    return store["SWEEP_ARTIFACTS_URL"].removeprefix("s3://").split("/")[0]


def whole_full_saves(store: dict) -> list[str]:
    names = keys(store["AWS_ENDPOINT_URL"], bucket_of(store))
    return [name.rsplit("/", 1)[0] for name in names if name.endswith("/optimizer.pt")
            and f"{name.rsplit('/', 1)[0]}/_manifest.json" in names]


def test_two_hosts_one_store_a_retry_elsewhere_resumes_and_a_third_host_reports(
        tmp_path, model_root, dataset_dir, fresh_database, s3_store, monkeypatch):
    host_a, host_b = (host(tmp_path, name, model_root, fresh_database, s3_store) for name in ("a", "b"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    # Full saves every 3 steps on a simulated clock of a minute per step; nothing stops it early.
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=60, early_stopping_patience=1000, full_checkpoint_minutes=3)
    first = subprocess.Popen(cli_command(tmp_path / "a", spec, env_extra=host_a, faults={"seconds_per_step": 60}),
                             env={**os.environ, **host_a}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not whole_full_saves(s3_store) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGSTOP)  # host A holds the experiment, with a whole full save in the store
    try:
        assert first.poll() is None and whole_full_saves(s3_store), "host A ended before a full save reached the store"
        code, result, output = run_cli(tmp_path / "b", spec, host_b)
        assert code == 75 and result == {}, output  # host B: refused at once, naming the holder
        assert re.search(r"already running \(code-sweep \w+ pid \d+ on ", output), output
        assert not list(Path(host_b["SWEEP_HOME"]).glob("experiments/**/checkpoint-*"))
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # host A is lost: no cleanup, its disk is gone with it
    first.communicate(timeout=60)

    code, result, output = run_cli(tmp_path / "b", spec, host_b)
    assert code == 0, output
    assert "resuming on this host from the store's full save" in output
    assert result["resumed_from_step"] > 0 and result["attempt_count"] == 2, output
    assert result["steps_run"] == 60 and result["stop_reason"] == "completed"
    assert [p["step"] for p in result["eval_points"]] == list(range(4, 61, 4))  # the whole curve
    assert result["checkpoint_url"].startswith(s3_store["SWEEP_ARTIFACTS_URL"] + "/experiments/")
    assert result["predictions_path"].startswith("s3://") and result["artifacts_missing"] is None
    assert result["validation_predictions_path"].startswith("s3://")  # the report's validation check reads it
    with sa.create_engine(fresh_database).connect() as connection:
        rows = connection.execute(sa.text("SELECT experiment_id, checkpoint_url FROM experiments")).all()
        attempts = connection.execute(sa.text("SELECT count(*) FROM attempts")).scalar()
    assert len(rows) == 1 and rows[0].checkpoint_url == result["checkpoint_url"] and attempts == 2
    stored = keys(s3_store["AWS_ENDPOINT_URL"], bucket_of(s3_store))
    prefix = result["checkpoint_url"].removeprefix(f"s3://{bucket_of(s3_store)}/")
    for name in ("model.safetensors", "test_predictions.parquet", "_manifest.json"):
        assert f"{prefix}/{name}" in stored
    assert f"{prefix.rsplit('/', 1)[0]}/result.json" in stored
    assert not [name for name in stored if name.endswith(".partial")]

    # Host A comes back empty and trains another model of the run; a third host, with nothing
    # local at all, renders the report: paired verdicts need both models' predictions.
    other = spec_for("Salesforce/codet5-small", dataset_dir, budget="demo", batch_size=8)
    code, _, output = run_cli(tmp_path / "a", other, host_a)
    assert code == 0, output
    host_c = host(tmp_path, "c", model_root, fresh_database, s3_store)
    for name, value in {**host_c, "SWEEP_REPORTS_DIR": str(tmp_path / "c" / "no-reports-here")}.items():
        monkeypatch.setenv(name, value)
    from training.tasks import report

    status, html_path = report("test_dag", "run-1", "small", "manual")
    html = html_path.read_text()
    assert "could not be read" not in html and "no predictions file" not in html
    assert re.search(r"Verdict: (higher F1|lower F1 on test|F1 not distinguishable)", html), html
    assert result["checkpoint_url"] in html

    # The report server, with no local reports folder: the report comes from the store.
    import shutil

    from sweep_airflow.report_server import report as served
    from training.report.published import published_runs
    from training.settings import Storage

    shutil.rmtree(html_path.parent.parent.parent)
    monkeypatch.setenv("SWEEP_REPORTS_DIR", str(tmp_path / "api-server" / "reports"))
    assert served("test_dag", "run-1", "report.html").body == html.encode()
    assert [(dag, run) for dag, run, _ in published_runs(Storage.from_environment())] == [("test_dag", "run-1")]


def test_a_store_outage_during_a_run_loses_nothing(tmp_path, model_root, dataset_dir, fresh_database, s3_server):
    from tests.s3 import new_bucket

    bucket = new_bucket(s3_server)
    outage = Outage(int(s3_server.rsplit(":", 1)[1]))
    store = store_env(f"http://127.0.0.1:{outage.port}", bucket)  # the workers reach the store through it
    env = host(tmp_path, "a", model_root, fresh_database, store)
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=40, early_stopping_patience=1000, full_checkpoint_minutes=3)
    # Down from the start: every save waits in the outbox while training goes on.
    process = subprocess.Popen(cli_command(tmp_path, spec, env_extra=env, faults={"seconds_per_step": 60}),
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    home = Path(env["SWEEP_HOME"])
    deadline = time.monotonic() + 240
    while not list(home.glob("experiments/**/.outbox/checkpoint-*")) and time.monotonic() < deadline \
            and process.poll() is None:
        time.sleep(0.1)
    assert keys(s3_server, bucket) == []
    outage.up()  # back while the run goes on
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    assert "could not look in the artifact store" in output  # down at the start: it trains from what it has
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["artifacts_missing"] is None and result["steps_run"] == 40
    stored = keys(s3_server, bucket)
    prefix = result["checkpoint_url"].removeprefix(f"s3://{bucket}/")
    assert f"{prefix}/model.safetensors" in stored and f"{prefix.rsplit('/', 1)[0]}/result.json" in stored
    assert not list(home.glob("experiments/**/.outbox/*"))

    # Down through a whole run's end (waiting 2 s): the row names what is missing, the host keeps
    # it, and `db sync` sends it once the store is back and corrects the row.
    outage.down()
    quick = dataclasses.replace(spec, run_id="run-2", upload_wait_seconds=2)
    code, result, output = run_cli(tmp_path, quick, env, faults={"seconds_per_step": 60})
    assert code == 0, output
    assert result["artifacts_missing"] and "result.json" in result["artifacts_missing"], output
    with sa.create_engine(fresh_database).connect() as connection:
        missing = connection.execute(sa.text(
            "SELECT artifacts_missing FROM experiments WHERE run_id = 'run-2'")).scalar()
    assert missing == result["artifacts_missing"]
    outage.up()
    synced = subprocess.run([*cli_command(tmp_path, quick)[:1], "-m", "training", "db", "sync"],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "sent what 1 experiment(s) had left; 0 still wait" in synced.stdout
    with sa.create_engine(fresh_database).connect() as connection:
        assert connection.execute(sa.text(
            "SELECT artifacts_missing FROM experiments WHERE run_id = 'run-2'")).scalar() is None
    prefix = result["checkpoint_url"].removeprefix(f"s3://{bucket}/")
    stored = keys(s3_server, bucket)
    assert f"{prefix}/model.safetensors" in stored and f"{prefix.rsplit('/', 1)[0]}/result.json" in stored
    outage.down()
