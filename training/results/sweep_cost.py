"""The whole sweep's device-hours from measured costs, before any of it trains: the plan run
naively against the plan with every saving on, so a user can see what the savings are worth.

Naive: eager, each tier's activation checkpointing as written (always on for the large tier), the
full resumable state saved at every evaluation, no pruning. Every saving: compiled (its compile
time counted: cold for a model's first experiment, warm-cache for the rest, one inductor cache on
the host), "auto" checkpointing (off unless the batch does not fit), a new best saves the model only
and the full state at most every `full_checkpoint_minutes`, and pruning at a measured samples ratio.

Per experiment (a grid point of a model, at the plan's cadence):
    training   = samples trained x seconds per training sample (measured at one batch size, taken
                 as per sample for the others: optimistic for small batches where a step is bound
                 by kernel launches)
    evaluation = evaluations (one per eval_steps optimizer steps) x (validation rows x seconds per row
                 + a fixed part per evaluation), + the finish phase's predictions (validation and test once)
    saves      = naive: a full save per evaluation; with savings: a model-only save per new best
                 (new_best_share of the evaluations) and a full save per full_checkpoint_minutes
    compile    = with savings only
    setup      = a fixed cost per experiment (model loading, data, the serving measurement).
The two fixed parts are measured on the CPU by short real experiments (scripts/bench_sweep_cost.py);
the GPU bench leaves them at 0: seconds against hours there.
Samples trained = planned samples (training/plan.py's planned_samples) x trained_share (what early
stopping leaves, measured) x the pruning samples ratio (with savings only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from training.plan import Hyperparameters, Plan, planned_steps


@dataclass(frozen=True)
class ModelCost:
    """One model's measured seconds on one device (scripts/gpu_bench.py, or the CPU bench)."""

    batch: int  # the batch the step times were measured at
    eager_step_seconds: float
    evaluation_row_seconds: float  # one validation row's forward pass, eager
    save_model_seconds: float
    save_full_seconds: float
    compiled_step_seconds: float | None = None  # None: not measured, taken as eager
    checkpointed_step_seconds: float | None = None  # None: not measured, taken as eager
    compile_cold_seconds: float = 0.0
    compile_warm_seconds: float = 0.0
    setup_seconds: float = 0.0  # per experiment, whatever the savings: loading, data, the serving measurement
    evaluation_fixed_seconds: float = 0.0  # per evaluation beyond its rows: the loop's set-up, metrics, records


@dataclass(frozen=True)
class Savings:
    compiled: bool = True
    auto_checkpointing: bool = True
    model_only_saves: bool = True
    pruning_samples_ratio: float = 1.0  # pruned samples / unpruned (1.0: no pruning)


NAIVE = Savings(compiled=False, auto_checkpointing=False, model_only_saves=False, pruning_samples_ratio=1.0)


PARTS = ("training", "evaluation", "saves", "compile", "setup")


@dataclass
class Breakdown:
    training: float = 0.0
    evaluation: float = 0.0
    saves: float = 0.0
    compile: float = 0.0
    setup: float = 0.0
    experiments: int = 0
    per_model: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(getattr(self, name) for name in PARTS)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def shares(self) -> str:
        total = self.seconds or 1.0
        return ", ".join(f"{name} {getattr(self, name) / total:.0%}" for name in PARTS)

    def add(self, model_id: str, part: Breakdown) -> None:
        for name in (*PARTS, "experiments"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.per_model[model_id] = self.per_model.get(model_id, 0.0) + part.hours


@dataclass(frozen=True)
class Data:
    train_rows: int
    validation_rows: int
    test_rows: int
    trained_share: float = 1.0  # samples trained before early stopping / planned (measured)
    new_best_share: float = 0.5  # evaluations that are a new best (each a model-only save)


def step_seconds(cost: ModelCost, checkpointing: bool, savings: Savings) -> float:
    """Seconds per optimizer step at cost.batch: what the plan's setting and the savings run."""
    if checkpointing and not savings.auto_checkpointing:
        return cost.checkpointed_step_seconds or cost.eager_step_seconds
    if savings.compiled and cost.compiled_step_seconds:
        return cost.compiled_step_seconds
    return cost.eager_step_seconds


def experiment(cost: ModelCost, hp: Hyperparameters, checkpointing: bool, eval_steps: int,
               full_checkpoint_minutes: float, data: Data, savings: Savings, first_of_model: bool,
               max_steps: int | None = None) -> Breakdown:
    steps = planned_steps(data.train_rows, hp.batch_size, hp.gradient_accumulation_steps, hp.num_epochs, max_steps)
    trained_steps = steps * data.trained_share * savings.pruning_samples_ratio
    samples = trained_steps * hp.batch_size * hp.gradient_accumulation_steps
    part = Breakdown(experiments=1, setup=cost.setup_seconds)
    part.training = samples * step_seconds(cost, checkpointing, savings) / cost.batch
    evaluations = math.floor(trained_steps / eval_steps)
    part.evaluation = (evaluations * data.validation_rows + data.validation_rows + data.test_rows) \
        * cost.evaluation_row_seconds + evaluations * cost.evaluation_fixed_seconds
    if savings.model_only_saves:
        wall = part.training + part.evaluation
        full_saves = math.floor(wall / (60 * full_checkpoint_minutes)) if full_checkpoint_minutes > 0 else evaluations
        part.saves = evaluations * data.new_best_share * cost.save_model_seconds + full_saves * cost.save_full_seconds
    else:
        part.saves = evaluations * cost.save_full_seconds
    if savings.compiled and cost.compiled_step_seconds:
        part.compile = cost.compile_cold_seconds if first_of_model else cost.compile_warm_seconds
    return part


def sweep(plan: Plan, costs: dict[str, ModelCost], data: Data, savings: Savings,
          tiers: list[str] | None = None, eval_steps: int | None = None, max_steps: int | None = None) -> Breakdown:
    """Every experiment of the plan's tiers (all by default) whose models have a measured cost."""
    total = Breakdown()
    for name in tiers or list(plan.tiers):
        tier = plan.tiers[name]
        checkpointing = tier.gradient_checkpointing is True
        for model_id in tier.models:
            if model_id not in costs:
                continue
            for index, hp in enumerate(tier.combinations()):
                total.add(model_id, experiment(costs[model_id], hp, checkpointing,
                                               eval_steps or plan.settings.eval_steps,
                                               plan.settings.full_checkpoint_minutes, data, savings, index == 0,
                                               max_steps))
    return total


def compare(plan: Plan, costs: dict[str, ModelCost], data: Data, pruning_samples_ratio: float,
            **options) -> tuple[Breakdown, Breakdown]:
    """(naive, every saving on) for the same plan, data and measured costs."""
    return (sweep(plan, costs, data, NAIVE, **options),
            sweep(plan, costs, data, Savings(pruning_samples_ratio=pruning_samples_ratio), **options))
