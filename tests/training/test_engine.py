"""The training engine on real runs of stand-in models: the effective arguments match the plan,
a diverging run stops with nan_loss, OOM back-off keeps the effective batch, compiled training,
the time budget, and the tokenization cache (resuming: test_resume.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tests.training.helpers import run_cli, spec_for
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
