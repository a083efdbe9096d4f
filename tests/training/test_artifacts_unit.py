"""The artifact store's contract without a model: a folder counts only once its manifest is there,
a local-path store (a shared file system) behaves as S3 does, no store means today's local files,
and the Postgres experiment lock names its holder and is free again once the holder is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.artifacts import MANIFEST, ArtifactStore
from training.engine.locks import ExperimentRunning, cross_host_lock
from training.engine.uploads import Uploads, hydrate


def working_copy(tmp_path) -> tuple[Path, Path]:
    experiments = tmp_path / "home" / "experiments"
    folder = experiments / "dag" / "run" / "key"
    full = folder / "checkpoint-6"
    full.mkdir(parents=True)
    for name, size in (("model.safetensors", 3000), ("optimizer.pt", 6000)):
        (full / name).write_bytes(os.urandom(size))
    (full / "trainer_state.json").write_text('{"best_model_checkpoint": "/elsewhere/key/checkpoint-6"}')
    return experiments, folder


@pytest.fixture(params=["s3", "shared-path"])
def store(request, tmp_path):
    experiments = str(tmp_path / "home" / "experiments")
    if request.param == "s3":
        env = request.getfixturevalue("s3_store")
        for name, value in env.items():
            request.getfixturevalue("monkeypatch").setenv(name, value)
        return ArtifactStore(env["SWEEP_ARTIFACTS_URL"], experiments, str(tmp_path / "reports"))
    return ArtifactStore(str(tmp_path / "shared"), experiments, str(tmp_path / "reports"))


def test_a_folder_is_whole_in_the_store_only_with_its_manifest(store, tmp_path):
    _, folder = working_copy(tmp_path)
    url = store.url_of(folder / "checkpoint-6")
    assert url.endswith("/experiments/dag/run/key/checkpoint-6")
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json"):  # every file, but no manifest yet
        store.put_file(folder / "checkpoint-6" / name, f"{url}/{name}")
    assert store.manifest(url) is None
    empty_host = ArtifactStore(store.url, str(tmp_path / "empty"), store.reports_dir)
    assert hydrate(empty_host, tmp_path / "empty" / "dag" / "run" / "key") is None  # half sent: not resumed from
    store.put_folder(folder / "checkpoint-6")
    assert store.manifest(url) == {"model.safetensors": 3000, "optimizer.pt": 6000, "trainer_state.json": 56}


def test_an_empty_host_brings_back_the_newest_whole_full_save(store, tmp_path):
    experiments, folder = working_copy(tmp_path)
    uploads = Uploads(store, folder)
    uploads.send(folder / "checkpoint-6")
    assert uploads.close(60) == [] and not list((folder / ".outbox").iterdir())
    other = ArtifactStore(store.url, str(tmp_path / "b" / "experiments"), store.reports_dir)
    target = tmp_path / "b" / "experiments" / "dag" / "run" / "key"
    assert hydrate(other, target) == 6
    restored = target / "checkpoint-6"
    assert (restored / "optimizer.pt").read_bytes() == (folder / "checkpoint-6" / "optimizer.pt").read_bytes()
    # The best it names is a path on the host that saved it: here, the same folder on this host.
    assert str(restored) in (restored / "trainer_state.json").read_text()


def test_without_a_store_artifacts_stay_where_they_are_written(tmp_path):
    experiments, folder = working_copy(tmp_path)
    local = ArtifactStore(None, str(experiments), str(tmp_path / "reports"))
    assert local.url_of(folder / "best") == str(folder / "best")
    assert local.put_folder(folder / "checkpoint-6") == str(folder / "checkpoint-6")
    assert not (folder / "checkpoint-6" / MANIFEST).exists()  # nothing copied, nothing added
    uploads = Uploads(local, folder)
    uploads.send(folder / "checkpoint-6")
    assert uploads.close(1) == [] and not (folder / ".outbox").exists()


HOLD = """
import sys, time
from training.engine.locks import cross_host_lock
with cross_host_lock(sys.argv[1], "key-1"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_cross_host_lock_names_its_holder_and_is_free_once_the_holder_is_killed(fresh_database):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, fresh_database], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExperimentRunning, match=rf"already running \(code-sweep key-1 pid {holder.pid} on "):
            with cross_host_lock(fresh_database, "key-1"):
                pass
        with cross_host_lock(fresh_database, "key-2"):  # another experiment is not held up
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a lost worker: no cleanup
        holder.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            with cross_host_lock(fresh_database, "key-1"):
                break
        except ExperimentRunning:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.2)


def test_without_the_database_the_hosts_own_lock_is_all_and_that_is_said(capsys):
    with cross_host_lock("postgresql://nobody@127.0.0.1:1/none", "key-1") as holding:
        holding.check()  # nothing to lose: never raises
    assert "going on with this host's lock only" in capsys.readouterr().out


def test_the_cross_host_lock_is_taken_again_once_postgres_is_back(tmp_path):
    """A restart ends every session and with it the lock: the keeper takes it again, so a retry
    elsewhere after the restart is still refused."""
    from training.results import database

    server = tmp_path / "pg"  # a server of its own: this test restarts it
    url = database.ensure_database(database.start_embedded_server(server), "locks")
    said = []
    try:
        with cross_host_lock(url, "key-r", say=said.append, check_seconds=0.3) as holding:
            assert database.stop_embedded_server(server)
            database.start_embedded_server(server)
            deadline = time.monotonic() + 30
            while not any("holding the cross-host lock of experiment key-r again" in line for line in said):
                assert time.monotonic() < deadline, said
                time.sleep(0.1)
            holding.check()  # held again: the run goes on
            with pytest.raises(ExperimentRunning, match="already running"):
                with cross_host_lock(url, "key-r"):
                    pass
        with cross_host_lock(url, "key-r"):  # released at the end as before
            pass
    finally:
        database.stop_embedded_server(server)


def test_a_lock_taken_elsewhere_while_the_database_was_away_is_said(fresh_database):
    import sqlalchemy as sa

    from training.engine.locks import LockKeeper, advisory_key

    other = sa.create_engine(fresh_database, isolation_level="AUTOCOMMIT", connect_args={
        "application_name": "code-sweep the retry elsewhere"})
    said = []
    with other.connect() as elsewhere:
        assert elsewhere.execute(sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": advisory_key("key-l")}).scalar()
        keeper = LockKeeper(sa.create_engine(fresh_database), None, advisory_key("key-l"), "key-l", said.append, 1)
        assert keeper.retake() is False  # what the keeper does once the server answers again
    assert keeper.lost_to.startswith("code-sweep the retry elsewhere")
    assert said == [f"warning: while the results DB was away, another process took experiment key-l's cross-host "
                    f"lock ({keeper.lost_to}); this run stops at its next step without saving"]
    with pytest.raises(ExperimentRunning, match="taken by code-sweep the retry elsewhere .* the other goes on"):
        keeper.check()  # what the trainer calls at every step (engine/callbacks.py LockWatch)
    other.dispose()
