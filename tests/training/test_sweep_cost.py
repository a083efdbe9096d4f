"""The sweep cost model (training/results/sweep_cost.py): the arithmetic by hand on small numbers,
and the GPU bench script end to end on tiny shapes, so the script a lent GPU runs cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.plan import Hyperparameters, load_plan
from training.results.sweep_cost import NAIVE, Data, ModelCost, Savings, compare, experiment, sweep

REPO = Path(__file__).resolve().parents[2]
COST = ModelCost(batch=10, eager_step_seconds=1.0, evaluation_row_seconds=0.01, save_model_seconds=2.0,
                 save_full_seconds=6.0, compiled_step_seconds=0.5, checkpointed_step_seconds=1.5,
                 compile_cold_seconds=60.0, compile_warm_seconds=5.0)
# 1,000 rows at batch 10 x 2 epochs: 200 steps, 2,000 samples; evaluations every 50 steps: 4.
POINT = Hyperparameters(learning_rate=1e-5, batch_size=10, num_epochs=2, weight_decay=0.0,
                        gradient_accumulation_steps=1)
DATA = Data(train_rows=1000, validation_rows=100, test_rows=50, trained_share=1.0, new_best_share=0.5)


def test_the_naive_experiment_by_hand():
    part = experiment(COST, POINT, checkpointing=True, eval_steps=50, full_checkpoint_minutes=30, data=DATA,
                      savings=NAIVE, first_of_model=True)
    assert part.training == pytest.approx(2000 * 1.5 / 10)  # the checkpointed step, the tier asks for it
    assert part.evaluation == pytest.approx((4 * 100 + 100 + 50) * 0.01)  # 4 evaluations, then the finish
    assert part.saves == pytest.approx(4 * 6.0)  # the full state at every evaluation
    assert part.compile == 0


def test_every_saving_by_hand():
    savings = Savings(pruning_samples_ratio=0.5)
    first = experiment(COST, POINT, True, 50, 30, DATA, savings, first_of_model=True)
    assert first.training == pytest.approx(1000 * 0.5 / 10)  # half the samples, compiled, no checkpointing
    assert first.evaluation == pytest.approx((2 * 100 + 150) * 0.01)  # 100 steps trained: 2 evaluations
    assert first.saves == pytest.approx(2 * 0.5 * 2.0)  # one new best each other evaluation; no full save in 30 min
    assert first.compile == 60.0
    assert experiment(COST, POINT, True, 50, 30, DATA, savings, first_of_model=False).compile == 5.0


def test_full_saves_follow_the_wall_clock():
    slow = ModelCost(batch=10, eager_step_seconds=100.0, evaluation_row_seconds=0.0, save_model_seconds=1.0,
                     save_full_seconds=10.0)
    part = experiment(slow, POINT, False, 50, 1, DATA, Savings(compiled=False), first_of_model=False)
    assert part.training == pytest.approx(20_000)  # 200 steps of 100 s: 333 minutes
    assert part.saves == pytest.approx(4 * 0.5 * 1.0 + 333 * 10.0)


def test_unmeasured_modes_fall_back_to_eager():
    eager_only = ModelCost(batch=10, eager_step_seconds=1.0, evaluation_row_seconds=0.0, save_model_seconds=0.0,
                           save_full_seconds=0.0, compile_cold_seconds=99.0)
    naive = experiment(eager_only, POINT, True, 50, 30, DATA, NAIVE, True)
    saving = experiment(eager_only, POINT, True, 50, 30, DATA, Savings(), True)
    assert naive.training == saving.training == pytest.approx(200.0)
    assert saving.compile == 0  # nothing compiled, nothing to pay


def test_the_plan_sweep_counts_every_grid_point_of_the_measured_models():
    plan = load_plan()
    costs = {"Salesforce/codet5-large": COST, "microsoft/codebert-base": COST}
    naive, saving = compare(plan, costs, DATA, 0.6)
    assert naive.experiments == 16 + 8  # the large and small tiers' grids of the two models measured
    assert set(naive.per_model) == set(costs)
    assert saving.hours < naive.hours
    only_large = sweep(plan, costs, DATA, NAIVE, tiers=["large"])
    assert only_large.experiments == 16
    # the large tier checkpoints as written: its naive training is at the checkpointed step
    large = plan.tiers["large"]
    expected = sum(experiment(COST, hp, True, plan.settings.eval_steps, plan.settings.full_checkpoint_minutes,
                              DATA, NAIVE, index == 0).seconds for index, hp in enumerate(large.combinations()))
    assert only_large.seconds == pytest.approx(expected)


@pytest.mark.slow
def test_the_gpu_bench_script_runs_on_tiny_shapes(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run([sys.executable, "gpu_bench.py", "--smoke", "--models", "Salesforce/codet5-base",
                                "--json", str(out), "--markdown", str(tmp_path / "bench.md")],
                               cwd=REPO / "scripts", capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    modes = {(r["compiled"], r["cache"]) for r in report["rows"]}
    assert modes == {(False, None), (True, "cold"), (True, "warm")}
    compiled = report["compile"]["Salesforce/codet5-base"]
    assert compiled["cold_seconds"] > compiled["warm_seconds"] >= 0  # the cache is what a warm compile reuses
    attention = report["attention"][0]
    assert attention["logits"]["sdpa"]["within_tolerance"] is True  # the bias carried as SDPA's mask
    assert set(attention["steps_per_second"]) >= {"sdpa", "eager"}
    sweep_figure = report["sweep"]["validation as the plan has it"]
    assert sweep_figure["experiments"] == 12 and 0 < sweep_figure["ratio"] < 1
    assert "Sweep (validation capped at 4,000 rows)" in (tmp_path / "bench.md").read_text()
