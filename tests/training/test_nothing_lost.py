"""Nothing recorded is lost and no experiment is wedged by a damaged file: an unreadable result is
set aside and the experiment finished again from its best model, a failure after training costs
the evaluation only, a truncated full save falls back to an older one, a full disk says so, and a
completed row is never downgraded by a later failed attempt."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.training.helpers import run_cli, spec_for
from training.engine.prepare import prepare


def experiment_folder(spec, env: dict) -> Path:
    """Where the run of this spec keeps its files, as the run itself computes it."""
    from tests.training.helpers import with_runtime

    return prepare(with_runtime(spec, env)).output_dir


def ledger(folder: Path) -> list[dict]:
    return json.loads((folder / "attempts.json").read_text())


def test_an_unreadable_result_file_is_set_aside_and_the_experiment_finished_again(tmp_path, env, dataset_dir,
                                                                                  fresh_database):
    env = {**env, "SWEEP_DATABASE_URL": fresh_database}
    spec = spec_for("microsoft/codebert-base", dataset_dir)
    code, first, output = run_cli(tmp_path, spec, env)
    assert code == 0 and first["stop_reason"] in ("completed", "early_stopped"), output
    folder = Path(first["checkpoint_path"]).parent
    result_file = folder / "result.json"
    result_file.write_bytes(result_file.read_bytes()[:500])  # truncated, as a bad disk or a copy leaves it

    code, second, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert "set aside" in output and "finishing from its best model" in output
    set_aside = list(folder.glob("result.json.unreadable-*"))
    assert len(set_aside) == 1 and len(set_aside[0].read_bytes()) == 500  # kept, not deleted
    for name in ("stop_reason", "validation_f1", "test_f1", "test_f1_ci_low", "test_f1_ci_high", "steps_run",
                 "best_step", "eval_points"):
        assert second[name] == first[name], name  # evaluating the same best model again gives the same record
    assert json.loads(result_file.read_text())["test_f1"] == first["test_f1"]
    assert [a["outcome"] for a in ledger(folder)] == [first["stop_reason"]] * 2
    assert ledger(folder)[1]["last_step"] == 0  # the second attempt trained nothing
    with sa.create_engine(fresh_database).connect() as connection:
        row = connection.execute(sa.text("SELECT status, stop_reason, test_f1 FROM experiments")).one()
    assert (row.status, row.stop_reason, row.test_f1) == ("finished", first["stop_reason"],
                                                          pytest.approx(first["test_f1"]))


def test_a_failure_after_training_costs_the_retry_the_evaluation_only(tmp_path, env, dataset_dir):
    spec = spec_for("Salesforce/codet5-small", dataset_dir)
    folder = experiment_folder(spec, env)
    (folder / "result.json").mkdir(parents=True)  # the result file cannot be written: a fault after training

    code, failed, output = run_cli(tmp_path, spec, env)
    assert code == 1 and failed["stop_reason"] == "failed" and "result.json" in failed["error"], output
    assert [a["outcome"] for a in ledger(folder)] == ["failed"]  # not the outcome it never recorded
    assert (folder / "trained.json").is_file() and (folder / "best" / "model.safetensors").is_file()

    (folder / "result.json").rmdir()
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert "finishing from its best model, without training again" in output and "resuming from" not in output
    trained = json.loads((folder / "trained.json").read_text())
    assert result["stop_reason"] == trained["stop_reason"] and result["steps_run"] == trained["steps_run"] > 0
    assert result["test_f1"] is not None and result["validation_f1"] is not None
    assert [a["outcome"] for a in ledger(folder)] == ["failed", result["stop_reason"]]
    assert ledger(folder)[1]["last_step"] == 0 and result["attempt_count"] == 2


def test_a_truncated_full_save_is_set_aside_and_the_retry_does_not_wedge(tmp_path, env, dataset_dir):
    # Batch 1, evaluation every 4 steps, a simulated minute a step and full saves every 3 minutes:
    # full saves at steps 3 and 6 (rotation keeps the newest only); a lost machine at step 7.
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               max_steps=20, early_stopping_patience=1000, full_checkpoint_minutes=3)
    clock = {"seconds_per_step": 60}
    code, _, output = run_cli(tmp_path, spec, env, faults={**clock, "kill_at_step": 7})
    assert code == -signal.SIGKILL, output
    folder = experiment_folder(spec, env)
    fulls = sorted(p.name for p in folder.glob("checkpoint-*") if (p / "optimizer.pt").is_file())
    assert fulls == ["checkpoint-6"]
    weights = folder / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])

    code, result, output = run_cli(tmp_path, spec, env, faults=clock)
    assert code == 0, output  # before: every retry died with "SafetensorError: invalid header length"
    assert "set aside checkpoint-6" in output and "model.safetensors" in output
    assert result["resumed_from_step"] is None and result["steps_run"] == 20 and result["stop_reason"] == "completed"
    kept = list((folder / "set_aside").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("checkpoint-6-") and (kept[0] / "optimizer.pt").is_file()


def test_a_full_save_that_does_not_load_is_skipped_for_an_older_one(tmp_path):
    """The check before a resume, on real files: a truncated optimizer state (a zip archive) and
    a truncated weights file are refused; whole ones pass."""
    import torch
    from safetensors.torch import save_file

    from training.engine.checkpoints import last_full_checkpoint, unreadable_file

    for step in (4, 8, 12):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"weight": torch.ones(64, 64)}, folder / "model.safetensors")
        torch.save({"state": {0: torch.zeros(64, 64)}}, folder / "optimizer.pt")
        (folder / "trainer_state.json").write_text("{}")
    optimizer = tmp_path / "checkpoint-12" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-200])
    weights = tmp_path / "checkpoint-8" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])
    assert "optimizer.pt" in unreadable_file(tmp_path / "checkpoint-12")
    assert "model.safetensors" in unreadable_file(tmp_path / "checkpoint-8")
    assert unreadable_file(tmp_path / "checkpoint-4") is None
    assert last_full_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "set_aside").iterdir()) == [
        "checkpoint-12", "checkpoint-8"]


def test_a_full_disk_is_named_and_retryable(tmp_path, env, dataset_dir):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:  # CI and the developers' machines run as root; elsewhere this cannot be built
        pytest.skip(f"cannot mount a small disk here: {mounted.stderr.strip()}")
    try:
        spec = spec_for("microsoft/codebert-base", dataset_dir)
        code, result, output = run_cli(tmp_path, spec, {**env, "SWEEP_EXPERIMENTS_DIR": str(disk)})
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)
    assert code == 1, output  # failed: Airflow retries it
    assert result["stop_reason"] == "failed" and result["error"].startswith("the disk is full"), result["error"]
    assert str(disk) in result["error"] and "error: the disk is full" in output


def test_a_completed_row_is_never_downgraded_by_a_later_failed_attempt(fresh_database):
    from tests.training.fixtures import result_record
    from training.results.record import ExperimentResult
    from training.results.store import record_experiment

    completed = result_record(stop_reason="completed", test_f1=0.7595, attempts=[
        {"attempt": 1, "seconds": 60.0, "gpu_count": 1, "outcome": "completed"}])
    assert record_experiment(fresh_database, ExperimentResult.from_dict(completed))
    failed = {**completed, "stop_reason": "failed", "validation_f1": None, "test_f1": None, "eval_points": [],
              "error": "JSONDecodeError: Expecting value", "attempt_count": 2,
              "attempts": [*completed["attempts"], {"attempt": 2, "seconds": 2.0, "gpu_count": 1, "outcome": "failed"}]}
    assert not record_experiment(fresh_database, ExperimentResult.from_dict(failed))  # kept the better record
    engine = sa.create_engine(fresh_database)
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT status, stop_reason, test_f1, error FROM experiments")).one()
        outcomes = connection.execute(sa.text("SELECT outcome FROM attempts ORDER BY attempt_number")).scalars().all()
        points = connection.execute(sa.text("SELECT count(*) FROM evaluation_points")).scalar()
    engine.dispose()
    assert (row.status, row.stop_reason, row.test_f1, row.error) == ("finished", "completed", 0.7595, None)
    assert outcomes == ["completed", "failed"] and points == 2  # the ledger says what happened
    better = {**completed, "test_f1": 0.8, "attempt_count": 3}  # a re-finish replaces it
    assert record_experiment(fresh_database, ExperimentResult.from_dict(better))


def test_db_sync_loads_every_readable_file_and_names_each_unreadable_one(tmp_path, fresh_database):
    import os
    import sys

    from tests.training.fixtures import result_record

    for name, learning_rate in (("a", 1e-5), ("b", 2e-5), ("c", 5e-5)):
        folder = tmp_path / "experiments" / name
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(result_record(learning_rate=learning_rate)))
    broken = tmp_path / "experiments" / "b" / "result.json"
    broken.write_bytes(broken.read_bytes()[:500])
    (tmp_path / "experiments" / "d").mkdir()
    (tmp_path / "experiments" / "d" / "result.json").write_bytes(b"\xff\xfe not text")
    sync = subprocess.run([sys.executable, "-m", "training", "db", "sync", "--root", str(tmp_path / "experiments")],
                          env={**os.environ, "SWEEP_DATABASE_URL": fresh_database}, capture_output=True,
                          text=True, timeout=120)
    assert sync.returncode == 1, sync.stdout + sync.stderr
    assert "loaded 2 result files" in sync.stdout
    assert str(broken) in sync.stderr and str(tmp_path / "experiments" / "d" / "result.json") in sync.stderr
    assert "2 result file(s) could not be read" in sync.stderr and "Traceback" not in sync.stderr
    engine = sa.create_engine(fresh_database)
    with engine.connect() as connection:
        rates = connection.execute(sa.text("SELECT learning_rate FROM experiments ORDER BY 1")).scalars().all()
    engine.dispose()
    assert rates == [1e-5, 5e-5]  # the file sorted after the broken one is loaded too


def test_a_run_resumed_between_evaluations_in_a_later_epoch_reproduces_the_uninterrupted_one(tmp_path, env,
                                                                                             dataset_dir):
    """320 rows at batch 16: 20 steps an epoch, capped at 40, an evaluation every 4 steps. A full
    save every 30 simulated minutes lands at step 30, between the evaluations at 28 and 32 and ten
    steps into the second epoch; a lost machine at step 31. The resumed run must train on the same
    rows in the same order as the run that was never stopped, and so end with the same curve and F1."""
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=16),
                               max_steps=40, early_stopping_patience=1000, full_checkpoint_minutes=30)
    clock = {"seconds_per_step": 60}
    (tmp_path / "whole").mkdir()
    code, whole, output = run_cli(tmp_path / "whole", spec, env, faults=clock)
    assert code == 0 and whole["steps_run"] == 40, output

    interrupted = dataclasses.replace(spec, run_id="run-2")
    code, _, output = run_cli(tmp_path, interrupted, env, faults={**clock, "kill_at_step": 31})
    assert code == -signal.SIGKILL, output
    code, resumed, output = run_cli(tmp_path, interrupted, env, faults=clock)
    assert code == 0 and resumed["resumed_from_step"] == 30, output
    assert [(p["step"], p["f1"], p["loss"]) for p in resumed["eval_points"]] == [
        (p["step"], p["f1"], p["loss"]) for p in whole["eval_points"]]
    for name in ("validation_f1", "test_f1", "best_step", "steps_run"):
        assert resumed[name] == whole[name], name


def test_an_attempt_that_fails_before_training_opens_its_own_ledger_entry(tmp_path):
    """A retry that fails before training starts (the model cannot load, say) never opened an
    attempt; the ledger still says it happened, after the completed one, which stays as it was."""
    from datetime import UTC, datetime, timedelta

    from training.engine.recovery import close_ledger

    completed = {"attempt": 1, "started_at": "2026-12-06T06:00:00+00:00", "seconds": 60.0, "gpu_count": 1,
                 "resumed_from_step": None, "last_step": 6, "outcome": "early_stopped"}
    (tmp_path / "attempts.json").write_text(json.dumps([completed]))
    attempts = close_ledger(tmp_path, "failed", datetime.now(UTC) - timedelta(seconds=3))
    assert attempts[0] == completed and [a["outcome"] for a in attempts] == ["early_stopped", "failed"]
    assert attempts[1]["attempt"] == 2 and attempts[1]["seconds"] >= 3 and attempts[1]["last_step"] == 0
    assert json.loads((tmp_path / "attempts.json").read_text()) == attempts
    assert close_ledger(tmp_path / "nothing-here", "failed", datetime.now(UTC)) == []  # no ledger: none made
