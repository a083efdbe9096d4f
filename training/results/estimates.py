"""What a tier run will cost, before any training: an estimate per planned experiment from this
deployment's history in the results database, and the budget gate that refuses a run above
`max_gpu_hours` (a tier's plan setting, or the trigger param).

Each experiment is priced by the first of these that has history, on the device kind the most
recent experiment of this deployment ran on, the same dataset and the same budget:

1. the same configuration (model, hyperparameters, planned samples): what it cost last time
   (median of its last three runs), +-15% or the spread of those runs if wider;
2. the same model, other configurations: its planned samples x the model's cost per sample seen
   (same batch size where there is one) x the share of planned samples its runs trained before
   early stopping, +-40%;
3. other models: the same, scaled by parameter count (training cost goes with parameters x
   tokens), from the other models' cost per sample and parameter, x0.5 to x2.

Anything else is unpriced, and a run with a budget gate and an unpriced experiment is refused: a
gate that lets unknown costs through is no gate. The estimate is of the plan without pruning, so
with pruning on it is the most the run can cost. Cost is GPU-hours; where the history ran without a
GPU it is CPU-hours (the experiments' wall-clock hours), and the gate compares those.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import sqlalchemy as sa

from training.engine.models import local_parameter_count
from training.parameters import RunParameters
from training.plan import Hyperparameters, Plan, Tier, configuration_label, planned_samples
from training.results.history import History, read_history
from training.results.record import StopReason

# The estimate's bands, one per basis (the module docstring says why each is as wide as it is).
SAME_CONFIGURATION_SPREAD = 0.15  # at least +-15%, or the spread of its last runs if wider
SAME_MODEL_SPREAD = 0.4  # +-40%: another configuration of the same model
OTHER_MODELS_FACTOR = 2.0  # x0.5 to x2: scaled from other models by parameter count


def basis_kind(basis: str) -> str:
    """The short name of a basis ("same configuration", "same model", "parameter count",
    "seed reruns", "unpriced"): the text before its first colon."""
    return basis.split(":", 1)[0]


@dataclass(frozen=True)
class Estimate:
    model_id: str
    kind: str  # "grid" or "seed confirmation"
    hyperparameters: Hyperparameters | None
    runs: int
    planned_samples: int | None
    hours: float | None  # per run; None: unpriced
    low: float | None
    high: float | None
    basis: str


@dataclass(frozen=True)
class TierEstimate:
    tier: str
    estimates: list[Estimate]
    unit: str  # "GPU-hour" or "CPU-hour"
    device: str | None
    why_unpriced: str | None = None  # when nothing could be priced: why
    max_gpu_hours: float | None = None

    @property
    def unpriced(self) -> list[Estimate]:
        return [e for e in self.estimates if e.hours is None]

    def total(self, which: str = "hours") -> float:
        return sum(getattr(e, which) * e.runs for e in self.estimates if e.hours is not None)

    def per_model(self) -> dict[str, tuple[float, float, float, int]]:
        """model -> (hours, low, high, unpriced experiments)."""
        models: dict[str, list] = {}
        for e in self.estimates:
            totals = models.setdefault(e.model_id, [0.0, 0.0, 0.0, 0])
            if e.hours is None:
                totals[3] += e.runs
            else:
                totals[0] += e.hours * e.runs
                totals[1] += e.low * e.runs
                totals[2] += e.high * e.runs
        return {model: tuple(values) for model, values in models.items()}

    def breakdown(self) -> str:
        lines = [f"estimated cost of this {self.tier} tier run: {self.total():.4f} {self.unit}s "
                 f"({self.total('low'):.4f}-{self.total('high'):.4f})"
                 + (f" on {self.device}" if self.device else "")
                 + (f"; {len(self.unpriced)} experiment(s) unpriced" if self.unpriced else "")]
        for model, (hours, low, high, unpriced) in self.per_model().items():
            unpriced_note = f", {unpriced} unpriced" if unpriced else ""
            lines.append(f"  {model}: {hours:.4f} ({low:.4f}-{high:.4f}){unpriced_note}")
        for e in self.estimates:
            what = configuration_label(e.hyperparameters) if e.hyperparameters else f"{e.runs} seed rerun(s)"
            cost = "unpriced" if e.hours is None else f"{e.hours * e.runs:.4f}"
            lines.append(f"    {e.model_id} {what}: {cost} ({e.basis})")
        if self.why_unpriced:
            lines.append(f"  unpriced because {self.why_unpriced}")
        return "\n".join(lines)


class BudgetExceeded(ValueError):
    """The run's estimate is above its max_gpu_hours, or cannot be checked against it."""


def gate(estimate: TierEstimate) -> None:
    """Raise BudgetExceeded, with the breakdown, when the run may cost more than its max_gpu_hours."""
    max_gpu_hours = estimate.max_gpu_hours
    if max_gpu_hours is None:
        return
    if estimate.unpriced:
        raise BudgetExceeded(
            f"max_gpu_hours = {max_gpu_hours:g}, but {len(estimate.unpriced)} experiment(s) of this run cannot be "
            f"priced, so the budget cannot be checked: refused before any training. Run the tier once without "
            f"max_gpu_hours (a small budget is enough to calibrate the cost per sample), or leave it empty.\n"
            + estimate.breakdown())
    total = estimate.total()
    if total > max_gpu_hours:
        unit_note = "" if estimate.unit == "GPU-hour" else " (CPU-hours here: the history ran without a GPU)"
        raise BudgetExceeded(
            f"estimated {total:.4f} {estimate.unit}s{unit_note} is above max_gpu_hours = {max_gpu_hours:g}: refused "
            "before any training. Lower the grid or the budget, choose fewer models, or raise max_gpu_hours.\n"
            + estimate.breakdown())


def cost(row: dict) -> float:
    """Device-hours of one experiment: GPU-hours, or wall-clock hours without a GPU."""
    return row["gpu_hours"] if row["gpu_count"] else row["wall_seconds"] / 3600


def _samples(row: dict, samples: str, steps: str) -> int | None:
    """A sample count of a row; rows from before migration 011 have only the step count."""
    if row[samples]:
        return row[samples]
    return row[steps] * row["batch_size"] * row["gradient_accumulation_steps"] if row[steps] else None


def seen(row: dict) -> int | None:
    return _samples(row, "samples_seen", "steps_run")


def planned(row: dict) -> int | None:
    return _samples(row, "samples_planned", "steps_planned")


def price(model_id: str, hp: Hyperparameters, samples: int | None, history: History,
          parameter_count: int | None) -> tuple[float | None, float | None, float | None, str]:
    """(hours, low, high, basis) of one run of one grid point."""
    def same_point(row):
        return (row["model_id"] == model_id and row["learning_rate"] == hp.learning_rate
                and row["batch_size"] == hp.batch_size and row["num_epochs"] == hp.num_epochs
                and row["weight_decay"] == hp.weight_decay
                and row["gradient_accumulation_steps"] == hp.gradient_accumulation_steps)

    exact = [row for row in history.rows if same_point(row) and row["stop_reason"] != StopReason.PRUNED
             and (samples is None or planned(row) == samples)][:3]
    if exact:
        costs = [cost(row) for row in exact]
        hours = statistics.median(costs)
        spread = max(SAME_CONFIGURATION_SPREAD, (max(costs) - min(costs)) / hours if hours
                     else SAME_CONFIGURATION_SPREAD)
        return hours, hours * (1 - min(spread, 0.9)), hours * (1 + spread), \
            f"same configuration: its last {len(exact)} run(s)"
    if samples is None:
        return None, None, None, "unpriced: no earlier run tells how many training rows this dataset and budget have"
    # Pruned runs are left out: the estimate is of the plan without pruning.
    usable = [row for row in history.rows if seen(row) and planned(row) and row["stop_reason"] != StopReason.PRUNED]
    mine = [row for row in usable if row["model_id"] == model_id]
    if mine:
        same_batch = [row for row in mine if row["batch_size"] == hp.batch_size] or mine
        per_sample = statistics.median([cost(row) / seen(row) for row in same_batch])
        share = statistics.median([min(seen(row) / planned(row), 1.0) for row in mine])
        hours = samples * per_sample * share
        basis = f"same model: cost per sample over {len(same_batch)} run(s), x {share:.2f} of planned samples trained"
        return hours, hours * (1 - SAME_MODEL_SPREAD), hours * (1 + SAME_MODEL_SPREAD), basis
    others = [row for row in usable if (row["parameter_count"] or history.parameters.get(row["model_id"]))]
    if others and parameter_count:
        per_sample_parameter = statistics.median([cost(row) / (seen(row) * (row["parameter_count"]
                                                                  or history.parameters[row["model_id"]]))
                                        for row in others])
        share = statistics.median([min(seen(row) / planned(row), 1.0) for row in others])
        hours = samples * per_sample_parameter * parameter_count * share
        basis = (f"parameter count: {parameter_count:,}, scaled from {len({row['model_id'] for row in others})} "
                 "other model(s)")
        return hours, hours / OTHER_MODELS_FACTOR, hours * OTHER_MODELS_FACTOR, basis
    return None, None, None, f"unpriced: no earlier run of {model_id} or of any model with a known size on this device"


def estimate_tier(url: str | None, plan: Plan, tier: Tier, run: RunParameters,
                  model_sources: dict[str, str]) -> TierEstimate:
    """Price every experiment a tier run of run.models will start; never raises for lack of history."""
    combinations = tier.combinations()
    models, confirm_seeds, max_gpu_hours = list(run.models), plan.settings.confirm_seeds, run.gpu_hours_cap(tier)
    if url is None:
        return _unpriced(tier, models, combinations, confirm_seeds, "there is no results database to learn from",
                         max_gpu_hours)
    try:
        history = read_history(url, run.dataset_source(plan), run.budget)
    except sa.exc.SQLAlchemyError as error:
        return _unpriced(tier, models, combinations, confirm_seeds,
                         f"the results database could not be read ({type(error).__name__})", max_gpu_hours)
    rows = [row["train_rows"] for row in history.rows if row["train_rows"]]
    train_rows = rows[0] if rows else None
    step_cap = run.step_cap(plan)
    estimates = []
    for model_id in models:
        parameters = history.parameters.get(model_id) or local_parameter_count(model_sources.get(model_id, ""))
        grid = []
        for hp in combinations:
            samples = (planned_samples(train_rows, hp.batch_size, hp.gradient_accumulation_steps, hp.num_epochs,
                                       step_cap) if train_rows else None)
            hours, low, high, basis = price(model_id, hp, samples, history, parameters)
            grid.append(Estimate(model_id, "grid", hp, 1, samples, hours, low, high, basis))
        estimates += grid
        if confirm_seeds:
            priced = [e for e in grid if e.hours is not None]
            if len(priced) == len(grid):
                estimates.append(Estimate(model_id, "seed confirmation", None, confirm_seeds, None,
                                          statistics.median([e.hours for e in priced]), min(e.low for e in priced),
                                          max(e.high for e in priced),
                                          "seed reruns: the chosen configuration is not known yet: the "
                                          "grid's median, between its cheapest and dearest"))
            else:
                estimates.append(Estimate(model_id, "seed confirmation", None, confirm_seeds, None, None, None,
                                          None, "unpriced: its grid is not fully priced"))
    why = None if history.rows else (f"no earlier experiment on this dataset and budget on {history.device}"
                                     if history.device else "no earlier experiment on this deployment")
    return TierEstimate(tier.name, estimates, history.unit, history.device, why, max_gpu_hours)


def _unpriced(tier, models, combinations, confirm_seeds, why, max_gpu_hours) -> TierEstimate:
    estimates = [Estimate(m, "grid", hp, 1, None, None, None, None, f"unpriced: {why}")
                 for m in models for hp in combinations]
    estimates += [Estimate(m, "seed confirmation", None, confirm_seeds, None, None, None, None, f"unpriced: {why}")
                  for m in models if confirm_seeds]
    return TierEstimate(tier.name, estimates, "GPU-hour", None, why, max_gpu_hours)
