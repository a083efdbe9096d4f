"""Checkpoint retention on a real Postgres, with a shared-path store and with S3 (moto's server):
each DAG's newest runs, a running run and a checkpoint a kept run reuses stay; an older run's
checkpoint weights go from the store and this host (its predictions stay), each removal recorded
(and named when an export asks for one); a second host drops its own copies of what was recorded;
a dry run touches nothing; the CLI refuses a keep of 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.training.fixtures import result_record
from training.artifacts import ArtifactStore
from training.results.record import ExperimentResult
from training.results.retention import RECORD, describe, prune_checkpoints
from training.results.store import finish_sweep_run, record_experiment

RUNS = ["scheduled__2026-11-01", "scheduled__2026-11-02", "scheduled__2026-11-03", "scheduled__2026-11-04"]


def checkpoint(store: ArtifactStore, home, run_id: str, key: str, size: int = 5000):
    """A best checkpoint in this host's working copy and, whole, in the store."""
    folder = home / "experiments" / "sweep_small" / run_id / key / "best"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(size))
    (folder / "config.json").write_text("{}")
    (folder / "test_predictions.parquet").write_bytes(b"rows")
    return folder, store.put_folder(folder)


def record(url, run_id, key, folder, store_url, started, status="finished", dag_id="sweep_small"):
    result = ExperimentResult.from_dict(result_record(
        run_id=run_id, key=key, dag_id=dag_id, checkpoint_path=str(folder), checkpoint_url=store_url,
        started_at=f"{started}T02:00:00+00:00", finished_at=f"{started}T03:00:00+00:00"))
    record_experiment(url, result)
    if status == "finished":
        finish_sweep_run(url, dag_id, run_id, "small", "scheduled")


@pytest.fixture(params=["shared-path", "s3"])
def sweep(request, fresh_database, tmp_path, monkeypatch):
    """Four nightly runs of one DAG, one experiment each; the newest reuses the second's result (its
    row points at the second run's checkpoint); a second DAG's only run is older than all of them."""
    url = str(tmp_path / "shared")
    if request.param == "s3":  # moto's S3 server on 127.0.0.1
        env = request.getfixturevalue("s3_store")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        url = env["SWEEP_ARTIFACTS_URL"]
    store = ArtifactStore(url, str(tmp_path / "a" / "experiments"), str(tmp_path / "reports"))
    folders = {}
    for index, run_id in enumerate(RUNS[:3]):
        folders[run_id] = checkpoint(store, tmp_path / "a", run_id, f"key-{index}")
        record(fresh_database, run_id, f"key-{index}", *folders[run_id], started=run_id[-10:])
    record(fresh_database, RUNS[3], "key-1", *folders[RUNS[1]], started=RUNS[3][-10:])  # reused
    old_medium = checkpoint(store, tmp_path / "a", "manual__2026-10-01", "key-m")
    record(fresh_database, "manual__2026-10-01", "key-m", *old_medium, started="2026-10-01", dag_id="sweep_medium")
    return store, folders, old_medium


def test_older_runs_lose_their_checkpoints_and_kept_or_reused_ones_stay(fresh_database, sweep):
    store, folders, old_medium = sweep
    dry = prune_checkpoints(fresh_database, store, keep_runs=2, dry_run=True)
    assert [(r.run_id, r.bytes) for r in dry.removals] == [(RUNS[0], 5000)]
    assert all(folder.is_dir() and store.manifest(url) for folder, url in folders.values())  # nothing touched

    pruned = prune_checkpoints(fresh_database, store, keep_runs=2)
    # Run 1 is the only one past the newest two (runs 3 and 4); run 2's checkpoint is older but run 4
    # reuses it; the medium DAG's single run is its newest.
    assert [r.run_id for r in pruned.removals] == [RUNS[0]] and pruned.bytes == 5000
    gone_folder, gone_url = folders[RUNS[0]]
    assert sorted(p.name for p in gone_folder.iterdir()) == ["config.json", "test_predictions.parquet"]
    assert store.manifest(gone_url) is None and not store.exists(f"{gone_url}/model.safetensors")
    assert store.read_bytes(f"{gone_url}/test_predictions.parquet") == b"rows"  # the reports' paired tests read it
    for folder, url in [folders[RUNS[1]], folders[RUNS[2]], old_medium]:
        assert folder.is_dir() and store.manifest(url) is not None
    with sa.create_engine(fresh_database).connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT e.run_id, c.checkpoint_url, c.bytes, c.keep_runs FROM checkpoint_removals c "
            "JOIN experiments e USING (experiment_id)")).all()
    assert rows == [(RUNS[0], gone_url, 5000, 2)]
    assert describe(pruned, 2, False)[-1].startswith(
        "removed the weights of 1 checkpoints, 0.0 MB; each DAG's newest 2 successful runs (and runs since)")
    assert prune_checkpoints(fresh_database, store, keep_runs=2).removals == []  # done once
    from training.results.store import find_succeeded

    assert find_succeeded(fresh_database, "key-0", "sweep_small", "later") is None  # trains again, not reused
    assert find_succeeded(fresh_database, "key-1", "sweep_small", "later").run_id == RUNS[3]
    from training.export.choose import ExportError
    from training.export.package import export_run

    with pytest.raises(ExportError, match=r"microsoft/codebert-base: its best checkpoint was removed by "
                                          r"prune-checkpoints on \d{4}-\d\d-\d\d \(run scheduled__2026-11-01\)"):
        export_run(fresh_database, "sweep_small", RUNS[0])


def test_a_failed_night_does_not_push_out_the_last_good_runs_weights(fresh_database, sweep, tmp_path):
    store, folders, _ = sweep
    failed = checkpoint(store, tmp_path / "a", "scheduled__2026-11-05", "key-f")
    result = ExperimentResult.from_dict(result_record(
        run_id="scheduled__2026-11-05", key="key-f", checkpoint_path=str(failed[0]), checkpoint_url=failed[1],
        stop_reason="failed", started_at="2026-11-05T02:00:00+00:00", finished_at="2026-11-05T02:10:00+00:00"))
    record_experiment(fresh_database, result)
    assert finish_sweep_run(fresh_database, "sweep_small", "scheduled__2026-11-05", "small", "scheduled") == "failed"
    pruned = prune_checkpoints(fresh_database, store, keep_runs=1, dag_id="sweep_small")
    # Run 4 (the last success) keeps its reused checkpoint of run 2; runs 1 and 3 go; the medium DAG is left alone.
    assert [r.run_id for r in pruned.removals] == [RUNS[0], RUNS[2]]
    assert (failed[0] / "model.safetensors").is_file() and (folders[RUNS[1]][0] / "model.safetensors").is_file()


def test_weights_of_a_folder_the_store_never_got_whole_go_too(fresh_database, sweep, tmp_path):
    store, _, _ = sweep
    folder = tmp_path / "a" / "experiments" / "sweep_small" / "manual__2026-10-20" / "key-h" / "best"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 100)
    url = store.url_of(folder)
    store.put_file(folder / "model.safetensors", f"{url}/model.safetensors")  # the upload stopped before the manifest
    record(fresh_database, "manual__2026-10-20", "key-h", folder, url, started="2026-10-20")
    pruned = prune_checkpoints(fresh_database, store, keep_runs=3)
    assert "manual__2026-10-20" in [r.run_id for r in pruned.removals]
    assert not store.exists(f"{url}/model.safetensors") and not (folder / "model.safetensors").exists()


def test_the_pipelines_writer_role_can_record_a_removal(fresh_database, sweep):
    with sa.create_engine(fresh_database).begin() as connection:
        connection.execute(sa.text("SET ROLE sweep_writer"))
        connection.execute(RECORD, {"experiment_id": connection.execute(sa.text(
            "SELECT min(experiment_id) FROM experiments")).scalar(), "checkpoint_path": "/x",
            "checkpoint_url": None, "bytes": 1, "keep": 1})
        assert connection.execute(sa.text("SELECT count(*) FROM checkpoint_removals")).scalar() == 1


def test_a_running_run_keeps_its_checkpoints_and_another_host_drops_recorded_copies(fresh_database, sweep,
                                                                                    tmp_path):
    store, folders, _ = sweep
    running = checkpoint(store, tmp_path / "a", "manual__2026-10-15", "key-r")
    record(fresh_database, "manual__2026-10-15", "key-r", *running, started="2026-10-15", status="running")
    host_b_copy = tmp_path / "b" / "experiments" / "sweep_small" / RUNS[0] / "key-0" / "best"
    host_b_copy.mkdir(parents=True)
    (host_b_copy / "model.safetensors").write_bytes(b"w" * 10)
    (host_b_copy / "test_predictions.parquet").write_bytes(b"rows")
    pruned = prune_checkpoints(fresh_database, store, keep_runs=1)
    assert [r.run_id for r in pruned.removals] == [RUNS[0], RUNS[2]]  # run 2 is reused by run 4; not the running one
    assert running[0].is_dir() and store.manifest(running[1]) is not None
    # Host B's working copy sits at the same path on its own disk; here it is a path of its own, so
    # the recorded removal is re-pointed at it, as host B's row would have written it.
    with sa.create_engine(fresh_database).begin() as connection:
        connection.execute(sa.text("UPDATE checkpoint_removals SET checkpoint_path = :path WHERE checkpoint_url = "
                                   ":url"), {"path": str(host_b_copy), "url": folders[RUNS[0]][1]})
    from training.results.retention import remove_local_copies

    assert remove_local_copies(fresh_database) == [host_b_copy]
    assert [p.name for p in host_b_copy.iterdir()] == ["test_predictions.parquet"]


def test_the_command_refuses_to_keep_no_runs(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "training", "prune-checkpoints", "--keep-runs", "0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "--keep-runs: must be at least 1, got 0" in completed.stderr


def test_the_command_names_an_unreachable_database_in_one_line():
    completed = subprocess.run([sys.executable, "-m", "training", "prune-checkpoints", "--keep-runs", "5"],
                               env={**os.environ, "SWEEP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert completed.stderr.startswith("error: could not reach the results database (")
