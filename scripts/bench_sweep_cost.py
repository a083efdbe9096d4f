"""`make bench`, the sweep's cost on this machine: training/results/sweep_cost.py (the model `make
gpu-bench` feeds with GPU times) fed with the step, evaluation-row and save times of the small tier's
stand-ins measured here, on the demo budget's data, with the early-stopping share and new-best share
of the recorded unpruned sweep.

- sweep_cost_model_ratio: what the model predicts for the recorded unpruned seed-42 sweep (as it ran:
  eager, a new best saving the model only, no pruning) / the seconds it really took (the experiments'
  wall time). The fixed parts (per experiment: loading, data, the serving measurement; per evaluation:
  the loop's set-up, metrics, records) come from two short experiments run here, not from the sweep
  they are checked against. How far to trust the GPU figure's arithmetic;
- sweep_savings_ratio_cpu: every saving the engine makes on this machine (compile stays off on a CPU,
  as "auto" does, and the small tier never checkpoints, so: model-only saves and pruning at the plan
  rules' measured samples ratio) / the naive sweep (the full state saved at every evaluation, no
  pruning). The GPU figure, with compile and checkpointing too, is `make gpu-bench`'s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def fixed_seconds(plan, model_id: str, data: Path, cost) -> tuple[float, float]:
    """(per experiment, per evaluation): the parts of a real experiment that are neither steps nor
    rows. A one-step experiment without periodic evaluations, less its step and the finish phase's
    predictions, is the first; one of up to five steps evaluating after every step, less the first and
    its extra steps and rows, over its evaluations, is the second."""
    import dataclasses

    from training.engine.experiment import run_experiment
    from training.parameters import RunParameters
    from training.spec import build_spec

    hp = plan.tiers["small"].combinations()[0]
    results = []
    for steps, eval_steps in ((1, 100), (5, 1)):
        spec = build_spec(plan, model_id, hp, RunParameters(budget="demo", dataset=str(data), max_steps=steps),
                          dag_id="bench", run_id=f"fixed-{steps}")
        results.append(run_experiment(dataclasses.replace(spec, eval_steps=eval_steps, logging_steps=eval_steps)))
    one, evaluated = results
    step = cost.eager_step_seconds * hp.batch_size / cost.batch
    rows = (one.validation_rows or 0) + (one.test_rows or 0)
    setup = max(one.wall_seconds - step - rows * cost.evaluation_row_seconds, 0.0)
    evaluations = len(evaluated.eval_points or [])  # early stopping may end it before its fifth step
    extra = (evaluated.wall_seconds - one.wall_seconds - (evaluated.steps_run - 1) * step
             - evaluations * (evaluated.validation_rows or 0) * cost.evaluation_row_seconds)
    return setup, max(extra / evaluations, 0.0) if evaluations else 0.0


def measured_costs(plan, models, length: int, data: Path) -> dict:
    """Each stand-in's eager step at the tier's largest batch, its evaluation row, its saves and its
    fixed cost per experiment."""
    import dataclasses

    from gpu_bench import one_mode  # scripts/gpu_bench.py: the same measurement as on a GPU

    from training.engine.models import load_tokenizer_and_model, resolve_model_source
    from training.results.sweep_cost import ModelCost
    from training.settings import Storage

    costs = {}
    args = argparse.Namespace(smoke=False, warmup=3, steps=30, length=length)
    for model_id in models:
        def factory(model_id=model_id):
            tokenizer, model = load_tokenizer_and_model(
                resolve_model_source(model_id, Storage.from_environment().model_root), [False, True])
            return model, len(tokenizer)

        with tempfile.TemporaryDirectory() as folder:
            row = one_mode(model_id, False, False, args, "cpu", "fp32", None, Path(folder), factory=factory)
        costs[model_id] = ModelCost(batch=row["batch"], eager_step_seconds=1 / row["steps_per_second"],
                                    evaluation_row_seconds=row["evaluation_row_seconds"],
                                    save_model_seconds=row["save_model_only_s"],
                                    save_full_seconds=row["save_full_state_s"])
        setup, per_evaluation = fixed_seconds(plan, model_id, data, costs[model_id])
        costs[model_id] = dataclasses.replace(costs[model_id], setup_seconds=setup,
                                              evaluation_fixed_seconds=per_evaluation)
    return costs


def new_best_share(curves) -> float:
    """Evaluations that were a new best of their run, over all evaluations."""
    new = total = 0
    for curve in curves:
        best = float("-inf")
        for f1 in (point[1] for point in curve.points):
            new, total, best = new + (f1 > best), total + 1, max(best, f1)
    return new / total if total else 0.5


def sweep_cost_figures(plan, data: Path, rows: list, curves_of, pruning_samples_ratio: float) -> dict:
    """curves_of(model_id) -> the model's recorded curves (bench_pruning.curves)."""
    from training.results.sweep_cost import Data, Savings, compare, sweep

    tier = plan.tiers["small"]
    budget = plan.budgets["demo"]
    costs = measured_costs(plan, tier.models, budget.max_length, data)
    predicted = actual = naive = saving = 0.0
    for model_id in tier.models:
        mine = [r for r in rows if r.model_id == model_id]
        share = statistics.median(min(r.samples_seen / r.samples_planned, 1.0) for r in mine)
        sizes = Data(mine[0].train_rows, mine[0].validation_rows, mine[0].test_rows, trained_share=share,
                     new_best_share=new_best_share(curves_of(model_id)))
        options = dict(tiers=["small"], eval_steps=budget.eval_steps, max_steps=budget.max_steps)
        one = {model_id: costs[model_id]}
        predicted += sweep(plan, one, sizes, Savings(compiled=False), **options).seconds
        actual += sum(r.wall_seconds for r in mine)
        without, withall = compare(plan, one, sizes, pruning_samples_ratio, **options)
        naive, saving = naive + without.seconds, saving + withall.seconds
        print(f"  {model_id}: {costs[model_id].eager_step_seconds * 1000:.0f} ms a step at batch "
              f"{costs[model_id].batch}, {costs[model_id].evaluation_row_seconds * 1000:.2f} ms an evaluation row, "
              f"{costs[model_id].setup_seconds:.1f} s fixed per experiment and "
              f"{costs[model_id].evaluation_fixed_seconds:.2f} s per evaluation, "
              f"trained share {share:.2f}; naive {without.seconds:.0f} s ({without.shares()}), every saving "
              f"{withall.seconds:.0f} s ({withall.shares()})")
    figures = {"sweep_cost_model_ratio": predicted / actual if actual else None,
               "sweep_savings_ratio_cpu": saving / naive if naive else None}
    print(f"sweep_cost_model_ratio {figures['sweep_cost_model_ratio']:.3f} (the model's {predicted:.0f} s for the "
          f"recorded unpruned sweep / its {actual:.0f} s of experiment wall time), sweep_savings_ratio_cpu "
          f"{figures['sweep_savings_ratio_cpu']:.3f} (every saving this machine makes / naive; the GPU goal "
          "<= 0.4 is make gpu-bench's)")
    return figures
