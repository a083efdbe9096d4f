"""Nothing is lost when the results database goes down mid-run: the experiment keeps training,
its result file stays beside the checkpoint, and `db sync` loads it once Postgres is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import sqlalchemy as sa

from tests.training.helpers import cli_command, spec_for
from training.results import database


def test_stopping_postgres_during_a_run_loses_nothing(tmp_path, dataset_dir, model_root):
    server_dir = tmp_path / "pg"  # a server of its own: this test stops it
    url = database.ensure_database(database.start_embedded_server(server_dir), "sweep")
    database.migrate(url)
    env = {**os.environ, "SWEEP_MODEL_ROOT": str(model_root), "SWEEP_HOME": str(tmp_path / "home"),
           "SWEEP_DATABASE_URL": url}
    spec = spec_for("Salesforce/codet5-small", dataset_dir, budget="demo", batch_size=4)
    process = subprocess.Popen(cli_command(tmp_path, spec, env_extra=env), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    engine = sa.create_engine(url)
    deadline = time.monotonic() + 120
    live_points = 0
    while time.monotonic() < deadline and process.poll() is None and not live_points:
        time.sleep(0.2)
        with engine.connect() as connection:  # F1 is visible while the experiment trains
            live_points = connection.execute(sa.text(
                "SELECT count(*) FROM evaluation_points p JOIN experiments e USING (experiment_id) "
                "WHERE e.status = 'running'")).scalar()
    engine.dispose()
    assert live_points, "no evaluation reached the database while training"
    assert database.stop_embedded_server(server_dir)

    output = process.communicate(timeout=300)[0]
    assert process.returncode == 3, output  # the final write failed, and says so
    assert "results DB unavailable, continuing" in output  # training went on without the database
    assert "db sync" in output
    assert (tmp_path / "result.json").is_file()

    database.start_embedded_server(server_dir)
    sync = subprocess.run([sys.executable, "-m", "training", "db", "sync"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr
    assert "loaded 1 result files the database lacked" in sync.stdout
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT status, stop_reason, test_f1, experiment_id FROM experiments")).one()
        points = connection.execute(sa.text("SELECT count(*) FROM evaluation_points WHERE experiment_id = :id"),
                                    {"id": row.experiment_id}).scalar()
        attempts = connection.execute(sa.text("SELECT count(*) FROM attempts")).scalar()
    engine.dispose()
    assert row.status == "finished" and row.stop_reason in ("completed", "early_stopped") and row.test_f1 is not None
    assert points >= 2 and attempts == 1
    again = subprocess.run([sys.executable, "-m", "training", "db", "sync"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert "loaded 0 result files" in again.stdout  # idempotent
    database.stop_embedded_server(server_dir)
