"""The run report: typed rows read from Postgres, every number computed here (render.py renders it
through Jinja as a self-contained HTML file with inline SVG charts and a Markdown version).

The four deliverables: the optimal configuration per model, F1 across all experiments, the
resources used, and a recommendation matrix for production; plus the change since the previous run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.plan import configuration_label
from training.report import charts
from training.report.comparisons import Comparison, SeedSummary, compare, leakage_notes, one_class_notes, seed_summary
from training.report.costs import (
    EstimateLine,
    PrunedRun,
    cost_unit,
    early_stop_saved,
    estimate_lines,
    mean,
    run_cost,
    training_modes,
)
from training.results.record import StopReason, StoredExperiment
from training.results.selection import best_of, ranked_by_validation

WITHIN_F1 = 0.01  # "fastest model within one F1 point of the best"


@dataclass(frozen=True)
class ModelSection:
    model_id: str
    experiments: list[StoredExperiment]
    best: StoredExperiment | None
    cost: float  # in the report's cost unit, seed reruns included
    cost_saved: float  # by early stopping, in the same unit
    wall_seconds: float
    failures: list[StoredExperiment]
    mean_time_to_best_seconds: float | None
    peak_memory_bytes: int | None
    heatmaps: list = field(default_factory=list)
    curves: object = ""
    confirmations: list[StoredExperiment] = field(default_factory=list)  # the chosen configuration, other seeds
    seeds: SeedSummary | None = None
    runner_up: Comparison | None = None  # the chosen configuration against the next one by validation F1
    modes: str | None = None  # compiled, activation checkpointing and its cost (training_modes)
    cap_note: str | None = None  # when the step cap made the grid's epochs irrelevant


@dataclass(frozen=True)
class Recommendation:
    title: str
    model_id: str | None
    reason: str


@dataclass(frozen=True)
class Change:
    model_id: str
    test_f1: float | None
    previous_test_f1: float | None
    delta: float | None
    cost: float  # in the report's cost unit
    previous_cost: float
    beyond_interval: bool


@dataclass(frozen=True)
class RunReport:
    dag_id: str
    run_id: str
    models: list[ModelSection]
    experiment_count: int
    failed_count: int
    cost: float  # in cost_unit
    cost_saved: float  # by early stopping, in cost_unit
    any_stand_in: bool
    cost_unit: str  # "GPU-hour", or "CPU-hour" (wall-clock hours) when nothing ran on a GPU
    costs: dict[str, float]  # per model, in cost_unit
    failures: list[StoredExperiment]
    recommendations: list[Recommendation]
    verdict: Comparison | None  # the chosen model against the runner-up model, on the same test rows
    previous_run_id: str | None
    changes: list[Change]
    metric: str | None  # which F1: of which positive class, or macro over how many classes
    leakage: list[str] = field(default_factory=list)
    one_class: list[str] = field(default_factory=list)  # chosen models that predict (nearly) one class
    positive_baseline_f1: float | None = None  # F1 of always predicting the positive class on the test rows
    seed_cost_gpu_hours: float = 0.0  # what seed confirmation cost, in cost_unit
    any_real: bool = False  # with any_stand_in: a run that mixes both, whose stand-ins are not ranked
    pruned: list[PrunedRun] = field(default_factory=list)
    estimates: list[EstimateLine] = field(default_factory=list)  # per model, from the run's first task
    estimate_unit: str | None = None  # the estimate's own unit ("GPU-hour", "CPU-hour")
    max_gpu_hours: float | None = None  # the run's budget gate, if it had one
    refusal: str | None = None  # why the start task refused the run before any training
    previous_note: str | None = None  # why no earlier run is compared with (what the nearest one differs in)
    exports: dict[str, dict] = field(default_factory=dict)  # per model: its export (training/export), if any

    @property
    def pruning_saved(self) -> float:
        return sum(p.saved for p in self.pruned)

    @property
    def estimated_total(self) -> float | None:
        if not self.estimates or any(line.estimated is None for line in self.estimates):
            return None
        return sum(line.estimated for line in self.estimates)

    @property
    def actual_total(self) -> float:
        return sum(line.actual for line in self.estimates)

    @property
    def refused_by_gate(self) -> bool:
        """The first task refused this run: it has a budget gate, no experiment, and an estimate
        above the gate or one that could not be priced."""
        return (self.max_gpu_hours is not None and self.experiment_count == 0
                and (self.estimated_total is None or self.estimated_total > self.max_gpu_hours))


def heatmaps(model_id: str, experiments: list[StoredExperiment]) -> list:
    """Validation F1 (what chooses) over learning rate x batch size, one grid per (epochs, weight
    decay) that occurs."""
    grids = []
    experiments = [e for e in experiments if e.confirmation_of is None]
    scored = [e.validation_f1 for e in experiments if e.validation_f1 is not None]
    scale = (min(scored), max(scored)) if scored else None  # one colour scale across the model's grids
    for epochs, decay in sorted({(e.num_epochs, e.weight_decay) for e in experiments}):
        subset = [e for e in experiments if (e.num_epochs, e.weight_decay) == (epochs, decay)]
        rates = sorted({e.learning_rate for e in subset})
        batches = sorted({e.batch_size for e in subset})
        cells = {(f"{e.learning_rate:g}", str(e.batch_size)): e.validation_f1 for e in subset}
        grids.append(charts.heatmap(f"{model_id}: validation F1, {epochs} epochs, weight decay {decay:g}",
                                    [f"{r:g}" for r in rates], [str(b) for b in batches], cells,
                                    "lr", "batch size", scale))
    return grids


def section(model_id: str, experiments: list[StoredExperiment], curves: dict[int, list], unit: str) -> ModelSection:
    grid = [e for e in experiments if e.confirmation_of is None]
    confirmations = [e for e in experiments if e.confirmation_of is not None]
    ranked = ranked_by_validation(grid)
    best = ranked[0] if ranked else None
    memory = [e.peak_memory_bytes for e in experiments if e.peak_memory_bytes]
    curve = {f"{model_id} (best: lr {best.learning_rate:g}, batch {best.batch_size})":
             curves.get(best.experiment_id, [])} if best else {}
    runner_up = (compare(f"the chosen configuration ({configuration_label(ranked[0])})", ranked[0],
                         f"the next by validation F1 ({configuration_label(ranked[1])})", ranked[1])
                 if len(ranked) > 1 else None)
    return ModelSection(
        model_id, grid, best, sum(run_cost(e, unit) for e in experiments),
        sum(early_stop_saved(e, unit) for e in experiments), sum(e.wall_seconds or 0 for e in experiments),
        [e for e in experiments if not e.succeeded],
        mean([e.time_to_best_seconds for e in grid if e.time_to_best_seconds is not None]),
        max(memory) if memory else None, heatmaps(model_id, grid),
        charts.learning_curves(f"{model_id}: validation F1 of the best run", curve) if curve else "",
        confirmations, seed_summary(best, confirmations), runner_up, training_modes(experiments),
        cap_note(model_id, grid))


def cap_note(model_id: str, grid: list[StoredExperiment]) -> str | None:
    """Said when the step cap, not the epochs, set every run's length: then the grid's epoch
    values trained the same steps and only a tie-break (the fewest epochs) chose between them."""
    epochs = sorted({e.num_epochs for e in grid})
    if len(epochs) < 2 or not grid or any(e.steps_planned_by != "max_steps" for e in grid):
        return None
    caps = sorted({e.max_steps for e in grid if e.max_steps})
    cap = f" ({caps[0]:,} steps)" if len(caps) == 1 else ""
    return (f"The step cap{cap} bound every run of {model_id}, so its {' and '.join(map(str, epochs))}-epoch cells "
            f"trained the same number of steps: epochs made no difference here, and ties went to the fewest "
            f"epochs ({epochs[0]}), the cheaper configuration without the cap.")


def recommend(models: list[ModelSection], unit: str,
              nothing_learned_below: float | None = None) -> tuple[list[Recommendation], Comparison | None]:
    """Most accurate; best F1 per unit of cost; fastest within one F1 point of the best. Every
    choice is made on validation F1; the test F1 of what was chosen is only reported, and the
    verdict between the top two models comes from a paired test on the same test rows. Stand-ins
    are never ranked against real models: where a run has both, only the real ones compete.
    nothing_learned_below: the F1 of always answering the positive class, when no chosen model is
    better than it (comparisons.one_class_notes): then nothing is recommended, and the reason is said."""
    scored = [m for m in models if m.best and m.best.validation_f1 is not None]
    if any(not m.best.is_stand_in for m in scored):
        scored = [m for m in scored if not m.best.is_stand_in]
    if not scored:
        return [Recommendation("Most accurate", None, "no model finished an experiment")], None
    ranked = sorted(scored, key=lambda m: m.best.validation_f1, reverse=True)
    verdict = None
    if len(ranked) > 1:
        verdict = compare(ranked[0].model_id, ranked[0].best, ranked[1].model_id, ranked[1].best, ranked[0].seeds,
                          ranked[1].seeds)
    if nothing_learned_below is not None:
        return [Recommendation("Most accurate", None,
                               f"no model to ship: none beats always answering the positive class (F1 "
                               f"{nothing_learned_below:.3f} on the test rows); train longer, on more data, or "
                               "check the labels")], verdict
    top = ranked[0]
    tie = (f"; a tie with {ranked[1].model_id} on validation, see below"
           if verdict and verdict.validation and verdict.validation.tie else "")
    picks = [Recommendation("Most accurate", top.model_id, f"validation F1 {top.best.validation_f1:.3f}, "
                                                           f"test F1 {_score(top.best.test_f1)}{tie}")]
    costed = [m for m in scored if m.cost > 0]
    if costed:
        value = max(costed, key=lambda m: m.best.validation_f1 / m.cost)
        picks.append(Recommendation(f"Best F1 per {unit}", value.model_id,
                                    f"{value.best.validation_f1 / value.cost:.3f} validation F1 per "
                                    f"{unit} for the sweep"))
    close = [m for m in scored
             if m.best.validation_f1 >= top.best.validation_f1 - WITHIN_F1 and m.best.latency_batch1_ms]
    if close:
        fastest = min(close, key=lambda m: m.best.latency_batch1_ms)
        picks.append(Recommendation("Fastest within one F1 point of the best", fastest.model_id,
                                    f"{fastest.best.latency_batch1_ms:.1f} ms per example at batch 1"))
    return picks, verdict


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def changes(models: list[ModelSection], previous_records: list[StoredExperiment], unit: str) -> list[Change]:
    """Each model's best against the previous run's best; only the previous run's rows are needed,
    not its charts."""
    previous = previous_records
    result = []
    for model in models:
        old_rows = [row for row in previous if row.model_id == model.model_id]
        old_best = best_of(old_rows)
        now_f1 = model.best.test_f1 if model.best else None
        old_f1 = old_best.test_f1 if old_best else None
        delta = None if None in (now_f1, old_f1) else now_f1 - old_f1
        outside = (delta is not None and model.best.test_f1_ci_low is not None
                   and not model.best.test_f1_ci_low <= old_f1 <= model.best.test_f1_ci_high)
        result.append(Change(model.model_id, now_f1, old_f1, delta, model.cost,
                             sum(run_cost(row, unit) for row in old_rows), outside))
    return result


def sections(records: list[StoredExperiment], curves: dict[int, list], unit: str) -> list[ModelSection]:
    """One per model, the most accurate first (validation F1 of its chosen configuration), then
    the models with no successful experiment."""
    models = [section(model_id, [r for r in records if r.model_id == model_id], curves, unit)
              for model_id in sorted({r.model_id for r in records})]
    return sorted(models, key=lambda m: (m.best is None, -(m.best.validation_f1 or 0) if m.best else 0))


def metric_description(rows: list[StoredExperiment]) -> str | None:
    """Which F1, and on how many rows of each split (a capped test split is never silent)."""
    kinds = sorted({(r.positive_label, r.class_count) for r in rows if r.class_count}, key=str)
    described = [f"F1 is macro-averaged over {count} classes" if positive is None
                 else f"F1 is of the positive class {positive!r}" for positive, count in kinds]
    counts = sorted({(r.train_rows, r.validation_rows, r.test_rows) for r in rows if r.test_rows is not None})
    described += [f"rows: {train} train, {validation} validation, {test} test" for train, validation, test in counts]
    return "; ".join(described) + "." if described else None


def build_report(dag_id: str, run_id: str, records: list[StoredExperiment], curves: dict[int, list] | None = None,
                 previous_id: str | None = None, previous_records: list[StoredExperiment] | None = None,
                 estimate_rows: list[dict] | None = None, refusal: str | None = None,
                 previous_note: str | None = None) -> RunReport:
    unit = cost_unit(records)
    models = sections(records, curves or {}, unit)
    rows = [e for m in models for e in m.experiments]
    one_class, baseline = one_class_notes({m.model_id: m.best for m in models})
    picks, verdict = recommend(models, unit, baseline if len(one_class) == len([m for m in models if m.best]) else None)
    every_row = rows + [e for m in models for e in m.confirmations]
    seed_cost = sum(run_cost(e, unit) for m in models for e in m.confirmations)
    estimate_rows = estimate_rows or []
    # The estimate's unit decides how actual cost is counted beside it: CPU-hours are wall-clock hours.
    estimate_unit = estimate_rows[0]["unit"] if estimate_rows else None
    compare_unit = "GPU-hour" if estimate_unit == "GPU-hour" else "CPU-hour"
    return RunReport(dag_id, run_id, models, len(every_row), sum(not e.succeeded for e in every_row),
                     sum(m.cost for m in models), sum(m.cost_saved for m in models), any(e.is_stand_in for e in rows),
                     unit, {m.model_id: m.cost for m in models}, [e for m in models for e in m.failures],
                     picks, verdict, previous_id, changes(models, previous_records or [], unit) if previous_id else [],
                     metric_description(rows), leakage=leakage_notes(rows), seed_cost_gpu_hours=seed_cost,
                     one_class=one_class, positive_baseline_f1=baseline,
                     any_real=any(not e.is_stand_in for e in rows),
                     pruned=[PrunedRun.of(e, unit) for e in rows if e.stop_reason == StopReason.PRUNED],
                     estimates=estimate_lines(estimate_rows, models, compare_unit), estimate_unit=estimate_unit,
                     max_gpu_hours=next((r["max_gpu_hours"] for r in estimate_rows if r["max_gpu_hours"]), None),
                     refusal=refusal, previous_note=previous_note)
