"""Resuming: a run killed after a best-only save resumes from the last full save, SIGTERM saves
the full state first, a second run of the same experiment leaves the first alone, a run whose
cross-host lock was taken elsewhere stops, and which checkpoint folders a retry keeps."""

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
import torch

from tests.training.helpers import cli_command, run_cli, spec_for
from training.engine.checkpoints import folder_bytes


def test_a_run_killed_after_a_best_only_save_resumes_from_the_last_full_save(tmp_path, env, dataset_dir):
    # 40 steps of batch 1, an evaluation every 4; patience so large that nothing stops it early. A
    # simulated clock of a minute per step with full saves every 3 minutes: the full state at step 3,
    # then step 4's evaluation (the first, so a new best) saves the model only, and a lost machine
    # (SIGKILL, no cleanup) at step 5 leaves both.
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=40, early_stopping_patience=1000, full_checkpoint_minutes=3)
    clock = {"seconds_per_step": 60}
    code, killed, output = run_cli(tmp_path, spec, env, faults={**clock, "kill_at_step": 5})
    assert code == -signal.SIGKILL and killed == {}, output
    folders = {p.name: p for p in Path(env["SWEEP_HOME"]).glob("experiments/*/*/*/checkpoint-*")}
    assert sorted(folders) == ["checkpoint-3", "checkpoint-4"]
    full = folders["checkpoint-3"]
    assert (full / "optimizer.pt").is_file() and (full / "rng_state.pth").is_file()
    assert (folders["checkpoint-4"] / "model.safetensors").is_file()
    assert not (folders["checkpoint-4"] / "optimizer.pt").exists()  # best-only: the model and nothing else
    full_size, model_size = folder_bytes(folders["checkpoint-3"]), folder_bytes(folders["checkpoint-4"])
    assert model_size * 2.5 < full_size  # AdamW's two moments: a full save is about three models

    code, result, output = run_cli(tmp_path, spec, env, faults=clock)
    assert code == 0, output
    assert "resuming from" in output and "checkpoint-3" in output
    assert "removing" in output and "checkpoint-4: saved after the last full save" in output
    assert result["attempt_count"] == 2 and result["resumed_from_step"] == 3  # the full save, not the best-only one
    assert result["steps_run"] == 40 and result["stop_reason"] == "completed"
    ledger = json.loads((Path(result["checkpoint_path"]).parent / "attempts.json").read_text())
    assert [a["outcome"] for a in ledger] == ["interrupted", result["stop_reason"]]
    assert (ledger[0]["full_saves"], ledger[0]["model_saves"]) == (1, 1)
    assert ledger[0]["seconds"] > 0
    assert result["wall_seconds"] == pytest.approx(sum(a["seconds"] for a in ledger), abs=0.01)
    assert result["full_checkpoints_saved"] == 1 + ledger[1]["full_saves"] and ledger[1]["full_saves"] >= 10
    assert result["checkpoint_bytes_written"] == sum(a["checkpoint_bytes"] for a in ledger) > full_size
    # The learning curve kept its history across the kill: every evaluation, timed over both attempts.
    assert [p["step"] for p in result["eval_points"]] == list(range(4, 41, 4))
    elapsed = [p["elapsed_seconds"] for p in result["eval_points"]]
    assert None not in elapsed and elapsed == sorted(elapsed)
    assert elapsed[-1] > ledger[0]["seconds"] * 0.5  # counted from the first attempt's start, not the resume
    assert result["time_to_best_seconds"] in elapsed


def test_sigterm_saves_the_full_state_and_the_retry_resumes_there(tmp_path, env, dataset_dir):
    # Full saves by the clock would come only after an hour: the one full save is SIGTERM's.
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=40, early_stopping_patience=1000, full_checkpoint_minutes=60)
    home = Path(env["SWEEP_HOME"])
    process = subprocess.Popen(cli_command(tmp_path, spec, env_extra=env), env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(home.glob("experiments/*/*/*/checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGSTOP)  # so the signal lands while training, however slow the machine
    assert process.poll() is None, "the run ended before it could be stopped"
    os.killpg(process.pid, signal.SIGTERM)  # what the operator's on_kill sends
    os.killpg(process.pid, signal.SIGCONT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 143 and not (tmp_path / "result.json").exists(), output
    assert "SIGTERM: saving the full state" in output
    fulls = [p for p in home.glob("experiments/*/*/*/checkpoint-*") if (p / "optimizer.pt").is_file()]
    assert len(fulls) == 1
    stopped_at = int(fulls[0].name.split("-")[1])
    ledger = json.loads((fulls[0].parent / "attempts.json").read_text())
    assert ledger[0]["outcome"] == "interrupted" and ledger[0]["full_saves"] == 1 and 4 <= stopped_at < 40

    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert result["resumed_from_step"] == stopped_at and result["steps_run"] == 40
    assert result["full_checkpoints_saved"] == 1 and result["model_checkpoints_saved"] >= 1


def test_a_second_run_of_the_same_experiment_exits_and_leaves_the_first_intact(tmp_path, env, dataset_dir):
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=30, early_stopping_patience=1000)
    home = Path(env["SWEEP_HOME"])
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    first = subprocess.Popen(cli_command(first_dir, spec, env_extra=env), env={**os.environ, **env},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(home.glob("experiments/*/*/*/checkpoint-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Paused, the first run still holds its lock, however long the second takes to start: without
    # the pause, a slow start on a loaded machine let the first finish and the second reuse it.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None, "the first run ended before the second started"
        code, second, output = run_cli(second_dir, spec, env)  # the same spec while the first trains
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert code == 75 and second == {}  # nothing written: the folder and its files are the first run's
    assert re.search(r"already running \(pid \d+ on ", output), output
    assert first.wait(300) == 0
    result = json.loads((first_dir / "result.json").read_text())
    folder = Path(result["checkpoint_path"]).parent
    ledger = json.loads((folder / "attempts.json").read_text())
    assert json.loads((folder / "result.json").read_text()) == result  # file and report agree
    assert [a["outcome"] for a in ledger] == [result["stop_reason"]] == ["completed"]
    assert result["steps_run"] == 30 and Path(result["checkpoint_path"], "config.json").is_file()


def test_a_retry_resumes_from_the_newest_full_save_and_drops_what_came_after(tmp_path):
    """Full saves at 4 and 12, model-only (best) saves at 8 and 16, and 20 cut short by a kill: the
    retry resumes from 12; 16 (a best of the lost steps) and 20 go; 4 and 8 stay (12's state may
    name 8 as its best)."""
    from safetensors.torch import save_file

    from training.engine.checkpoints import last_full_checkpoint

    for step, kind in ((4, "full"), (8, "model"), (12, "full"), (16, "model"), (20, "cut short")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"weight": torch.ones(4)}, folder / "model.safetensors")
        if kind == "full":
            torch.save({"moments": torch.zeros(4)}, folder / "optimizer.pt")
        if kind != "cut short":  # the Trainer writes its state file last
            (folder / "trainer_state.json").write_text("{}")
    assert last_full_checkpoint(tmp_path) == str(tmp_path / "checkpoint-12")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert last_full_checkpoint(tmp_path / "nothing-here") is None


def test_without_a_full_save_a_retry_starts_over(tmp_path):
    from training.engine.checkpoints import last_full_checkpoint

    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")  # a model-only best
    assert last_full_checkpoint(tmp_path) is None and not (tmp_path / "checkpoint-4").exists()


def test_a_run_whose_lock_was_taken_elsewhere_stops_at_its_next_step_without_saving(tmp_path, env, dataset_dir,
                                                                                   fresh_database):
    # Evaluations (and best-only saves) every 4 steps; at the end of step 5 the lock's session ends
    # (a Postgres restart) and a retry elsewhere takes the lock first. Step 6 is never finished here:
    # no save, no evaluation, no result, no failed row; the exit says another run has it.
    env = {**env, "SWEEP_DATABASE_URL": fresh_database}
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=40, early_stopping_patience=1000, full_checkpoint_minutes=600)
    code, result, output = run_cli(tmp_path, spec, env, faults={"take_lock_at_step": 5})
    assert code == 75 and result == {}, output
    assert "another process took experiment" in output and "stops at its next step without saving" in output
    assert re.search(r"cross-host lock was taken by code-sweep the retry elsewhere from .*; this run stops here "
                     r"without saving, the other goes on", output), output
    folders = sorted(p.name for p in Path(env["SWEEP_HOME"]).glob("experiments/*/*/*/checkpoint-*"))
    assert folders == ["checkpoint-4"]  # step 4's new best; nothing after the lock was lost
    assert not list(Path(env["SWEEP_HOME"]).glob("experiments/*/*/*/result.json"))
    with sa.create_engine(fresh_database).connect() as connection:
        reasons = connection.execute(sa.text("SELECT stop_reason FROM experiments")).scalars().all()
    assert "failed" not in reasons
