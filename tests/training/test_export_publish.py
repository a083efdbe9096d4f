"""Publishing an export to a local folder whole, whatever kills it, and the scratch a killed export
leaves: filesystem only, no training."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from training.export.package import SCRATCH, clear_abandoned_scratch, publish_local, restore_interrupted


def folder_with(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "README.md").write_text(text)
    (path / "config.json").write_text("{}")
    return path


def test_a_new_export_replaces_the_old_whole(tmp_path):
    target = folder_with(tmp_path / "exports" / "model", "old card")
    (target / "only-in-old.txt").write_text("stale")
    publish_local(folder_with(tmp_path / "built", "new card"), target)
    assert (target / "README.md").read_text() == "new card"
    assert not (target / "only-in-old.txt").exists()  # replaced, not merged
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no .partial, no .old


def test_a_kill_between_the_renames_loses_neither_folder(tmp_path):
    target = folder_with(tmp_path / "exports" / "model", "old card")
    # What a SIGKILL between publish_local's two renames leaves: the old folder aside, the new one staged.
    target.replace(target.with_name("model.old"))
    folder_with(tmp_path / "exports" / "model.partial", "new card")
    restore_interrupted(target)  # what the next export does first
    assert (target / "README.md").read_text() == "old card"
    assert not target.with_name("model.old").exists()
    publish_local(folder_with(tmp_path / "built", "new card"), target)
    assert (target / "README.md").read_text() == "new card"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_scratch_of_a_killed_export_is_cleared_and_a_live_ones_is_not(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = folder_with(tmp_path / f"{SCRATCH}{host}-{gone.pid}-abc", "left by a SIGKILL")
    alive = folder_with(tmp_path / f"{SCRATCH}{host}-{os.getppid()}-def", "an export at work")
    own = folder_with(tmp_path / f"{SCRATCH}{host}-{os.getpid()}-ghi", "this process's")
    other_host = folder_with(tmp_path / f"{SCRATCH}elsewhere-{gone.pid}-jkl", "not this host's to judge")
    assert clear_abandoned_scratch(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and own.exists() and other_host.exists()
