"""The training engine on real runs of stand-in models: the effective arguments match the plan,
a diverging run stops with nan_loss, OOM back-off keeps the effective batch, a killed run
resumes from its checkpoint, the time budget, and the tokenization cache."""

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
import torch

from tests.training.helpers import cli_command, run_cli, spec_for
from training.engine.checkpoints import folder_bytes
from training.plan import DEFAULT_PLAN_PATH, load_plan, planned_steps

# The plan's own cadence (evaluate every 100 steps, log every 25) on a sliver of data: all 320
# training rows, so a grid point's epochs reach step 100 (a step cap only ever shortens a run).
FIDELITY_BUDGET = """
[budgets.fidelity]
max_eval_samples = 16
max_length = 32
max_steps = 100
"""


@pytest.fixture(scope="module")
def fidelity_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.toml"
    text = DEFAULT_PLAN_PATH.read_text()
    path.write_text(text.replace("[budgets.full]\n", "[budgets.full]\n" + FIDELITY_BUDGET, 1))
    return load_plan(path)


@pytest.fixture
def env(tmp_path, model_root):
    return {"SWEEP_MODEL_ROOT": str(model_root), "SWEEP_HOME": str(tmp_path / "home")}


def effective_arguments(result: dict) -> dict:
    return json.loads((Path(result["checkpoint_path"]).parent / "training_args.json").read_text())


@pytest.mark.parametrize("model_id, tier", [("microsoft/codebert-base", "small"),
                                            ("Salesforce/codet5-large", "large")])
def test_effective_arguments_are_the_plans(tmp_path, env, dataset_dir, fidelity_plan, model_id, tier):
    # The last whose epochs reach the cap of 100 steps, so nothing is a default by accident.
    grid = [c for c in fidelity_plan.tiers[tier].combinations()
            if planned_steps(320, c.batch_size, c.gradient_accumulation_steps, c.num_epochs, None) >= 100][-1]
    spec = spec_for(model_id, dataset_dir, budget="fidelity", plan=fidelity_plan, **grid.as_dict())
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    args = effective_arguments(result)
    assert (args["eval_strategy"], args["eval_steps"], args["logging_steps"]) == ("steps", 100, 25)
    assert (args["early_stopping_patience"], args["early_stopping_threshold"]) == (2, 0.001)
    assert args["load_best_model_at_end"] and args["metric_for_best_model"] == "f1" and args["greater_is_better"]
    assert args["pin_memory_requested"] is True
    assert args["dataloader_pin_memory"] is torch.cuda.is_available()  # transformers pins only for a GPU
    assert args["activation_checkpointing"] is (tier == "large")
    assert args["gradient_accumulation_steps"] == grid.gradient_accumulation_steps == (2 if tier == "large" else 1)
    assert args["per_device_train_batch_size"] == grid.batch_size
    assert (args["learning_rate"], args["weight_decay"], args["num_train_epochs"]) == (
        grid.learning_rate, grid.weight_decay, grid.num_epochs)
    assert args["seed"] == args["data_seed"] == 42
    assert args["train_sampling_strategy"] == "group_by_length" and args["attention_implementation"] == "sdpa"
    assert [p["step"] for p in result["eval_points"]] == [100]  # evaluated at step 100, and only then
    assert result["precision"] == "fp32" and result["device"].startswith("cpu")


def test_non_finite_loss_stops_the_run(tmp_path, env, dataset_dir):
    spec = spec_for("microsoft/codebert-base", dataset_dir, budget="demo", learning_rate=1e30)
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert result["stop_reason"] == "nan_loss"
    assert result["steps_run"] < result["steps_planned"]


@pytest.mark.parametrize("simulated_max_batch, expected", [("4", "trained"), ("0", "oom")])
def test_oom_back_off_keeps_the_effective_batch(tmp_path, env, dataset_dir, simulated_max_batch, expected):
    spec = spec_for("microsoft/codebert-base", dataset_dir, batch_size=16, gradient_accumulation_steps=1)
    code, result, output = run_cli(tmp_path, spec, env, faults={"max_batch": simulated_max_batch})
    assert code == 0, output
    if expected == "trained":
        assert (result["per_device_batch_size"], result["effective_accumulation_steps"]) == (4, 4)
        assert result["stop_reason"] in ("completed", "early_stopped") and result["test_f1"] is not None
        assert effective_arguments(result)["per_device_train_batch_size"] == 4
    else:  # 16 -> 8 -> 4 -> 2 -> 1 and still too big
        assert result["stop_reason"] == "oom"
        assert (result["per_device_batch_size"], result["effective_accumulation_steps"]) == (1, 16)
        assert result["test_f1"] is None and result["checkpoint_path"] is None


@pytest.mark.parametrize("batch, per_device", [(8, 8), (16, 8)])
def test_auto_checkpointing_turns_on_under_out_of_memory_before_the_batch_is_halved(tmp_path, env, dataset_dir,
                                                                                     batch, per_device):
    # Batch 4 fits without activation checkpointing, 8 with it (the simulated limit doubles).
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, batch_size=batch),
                               gradient_checkpointing="auto")
    code, result, output = run_cli(tmp_path, spec, env, faults={"max_batch": 4})
    assert code == 0, output
    turned_on = output.index("turning activation checkpointing on")
    if batch == 8:  # on at the same batch: it fits
        assert "retrying with" not in output
    else:  # on first, and only then halved
        assert turned_on < output.index("retrying with per-device batch 8, accumulation 2")
    assert result["activation_checkpointing"] is True and result["per_device_batch_size"] == per_device
    assert result["per_device_batch_size"] * result["effective_accumulation_steps"] == batch
    assert effective_arguments(result)["activation_checkpointing"] is True
    assert result["stop_reason"] in ("completed", "early_stopped") and result["test_f1"] is not None


def test_auto_checkpointing_stays_off_while_memory_suffices(tmp_path, env, dataset_dir):
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, batch_size=8),
                               gradient_checkpointing="auto")
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert result["activation_checkpointing"] is False and "turning activation checkpointing on" not in output
    assert effective_arguments(result)["activation_checkpointing"] is False


COMPILED_F1_TOLERANCE = 0.02  # |compiled - eager| validation and test F1; fp32 on the CPU matches far closer


def test_compiled_training_matches_eager_and_reuses_its_cache(tmp_path, env, dataset_dir):
    """compile = true on the CPU (inductor builds C++ kernels): the same metrics as eager within the
    stated tolerance; a second compiled experiment (another learning rate: another key, same shapes)
    finds the inductor cache under $SWEEP_HOME/cache/ and compiles in at most 0.3x the first's time."""
    import pyarrow.parquet as pq

    def run(name, compiled, learning_rate=5e-5):
        spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, learning_rate=learning_rate),
                                   compile=compiled)
        (tmp_path / name).mkdir()
        code, result, output = run_cli(tmp_path / name, spec, env)
        assert code == 0, output
        return result

    eager, first, second = run("eager", False), run("compiled", True), run("compiled-again", True, 2e-5)
    assert eager["compiled"] is False and eager["compile_seconds"] is None
    assert first["compiled"] is True and effective_arguments(first)["torch_compile"] is True
    assert abs(first["validation_f1"] - eager["validation_f1"]) <= COMPILED_F1_TOLERANCE
    assert abs(first["test_f1"] - eager["test_f1"]) <= COMPILED_F1_TOLERANCE
    same = [a == b for a, b in zip(pq.read_table(first["predictions_path"])["predicted_index"].to_pylist(),
                                   pq.read_table(eager["predictions_path"])["predicted_index"].to_pylist())]
    assert sum(same) >= 0.95 * len(same)
    assert (Path(env["SWEEP_HOME"]) / "cache" / "inductor").is_dir()
    assert first["compile_seconds"] > 0 and second["compile_seconds"] <= 0.3 * first["compile_seconds"], \
        (first["compile_seconds"], second["compile_seconds"])


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


def test_time_budget_stops_training_and_keeps_a_model(tmp_path, env, dataset_dir):
    # Over a thousand steps, and patience no run can exhaust: only the clock can stop this one.
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, budget="demo", batch_size=1),
                               early_stopping_patience=100_000)
    code, result, output = run_cli(tmp_path, spec, env, "--time-limit-seconds", "5")
    assert code == 0, output
    assert result["stop_reason"] == "timeout"
    assert result["steps_run"] < result["steps_planned"]
    assert Path(result["checkpoint_path"], "config.json").is_file()


def test_checkpoints_on_disk_and_fingerprints(tmp_path, env, dataset_dir):
    spec = spec_for("Salesforce/codet5-small", dataset_dir)
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert result["most_checkpoints_on_disk"] <= 3  # the best, the last full save and the best it names
    assert sorted(p.name for p in Path(result["checkpoint_path"]).parent.iterdir() if p.is_dir()) == ["best"]
    assert result["model_revision"].startswith("sha256:") and len(result["dataset_fingerprint"]) == 16
    assert result["code_version"] and set(result["versions"]) == {"torch", "transformers"}
    assert result["peak_memory_bytes"] > 0 and result["tokens_per_second"] > 0 and result["samples_per_second"] > 0
    assert result["mean_gpu_utilization_percent"] is None  # no NVML here: unknown, not zero


def test_tokenized_splits_are_reused_by_the_next_experiment(tmp_path, env, dataset_dir):
    first = run_cli(tmp_path, spec_for("Salesforce/codet5-small", dataset_dir, learning_rate=2e-5), env)
    second = run_cli(tmp_path, spec_for("Salesforce/codet5-small", dataset_dir, learning_rate=5e-5), env)
    assert first[0] == second[0] == 0
    assert "tokenized splits cached in" in first[2]
    assert "tokenized splits reused from" in second[2]


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


def test_a_run_that_reaches_its_last_step_is_completed_not_early_stopped(tmp_path, env, dataset_dir):
    """lr 1e-12 changes nothing, so every evaluation after the first is one without a gain. With
    evaluations at steps 2 and 4 and 4 steps in all, patience 2 is never used up in training; the
    evaluation of the best checkpoint afterwards must not count as a third (a GPU run showed it did)."""
    spec = dataclasses.replace(spec_for("Salesforce/codet5-small", dataset_dir, learning_rate=1e-12), max_steps=4)
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert [p["step"] for p in result["eval_points"]] == [2, 4]
    assert result["steps_run"] == 4 and result["stop_reason"] == "completed"

    spec = dataclasses.replace(spec, max_steps=8, run_id="run-2")  # evaluations 2, 4, 6: stops at 6
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert result["steps_run"] == 6 and result["stop_reason"] == "early_stopped"
