"""The run report: typed rows read from Postgres, every number computed here, Jinja renders a
self-contained HTML file (inline SVG charts) and a Markdown version under reports/<dag>/<run>/.

The four deliverables: the optimal configuration per model, F1 across all experiments, the
resources used, and a recommendation matrix for production; plus the change since the previous run.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from training.report import charts
from training.report.comparisons import Comparison, SeedSummary, compare, leakage_notes, one_class_notes, seed_summary
from training.results.estimates import basis_kind, run_estimate
from training.results.record import StopReason, StoredExperiment
from training.results.selection import best_of, ranked_by_validation
from training.results.store import evaluation_curves, previous_run_id, run_experiments

TEMPLATES = Path(__file__).with_name("templates")
WITHIN_F1 = 0.01  # "fastest model within one F1 point of the best"


def gpu_hours_saved(experiment: StoredExperiment) -> float:
    """Steps an early stop did not run, priced at this experiment's GPU-hours per step."""
    if experiment.stop_reason != StopReason.EARLY_STOPPED or not experiment.steps_run or not experiment.steps_planned:
        return 0.0
    return experiment.gpu_hours * max(experiment.steps_planned - experiment.steps_run, 0) / experiment.steps_run


def run_cost(experiment: StoredExperiment, unit: str) -> float:
    """One experiment's cost in the report's unit: GPU-hours, or wall-clock hours without a GPU."""
    return experiment.gpu_hours if unit == "GPU-hour" else (experiment.wall_seconds or 0) / 3600


@dataclass(frozen=True)
class PrunedRun:
    """A run successive halving stopped: where, against what, and what stopping saved at most (the
    samples it did not train, at its own cost per sample; it might have stopped early anyway)."""

    experiment: StoredExperiment
    saved: float  # in the report's cost unit

    @classmethod
    def of(cls, e: StoredExperiment, unit: str) -> PrunedRun:
        left = max((e.samples_planned or 0) - (e.samples_seen or 0), 0)
        return cls(e, run_cost(e, unit) * left / e.samples_seen if e.samples_seen else 0.0)


@dataclass(frozen=True)
class EstimateLine:
    """What the run's first task estimated for one model, beside what it cost."""

    model_id: str
    estimated: float | None  # None: some experiment was unpriced
    low: float | None
    high: float | None
    actual: float
    bases: list[str]

    @property
    def ratio(self) -> float | None:
        return self.estimated / self.actual if self.estimated is not None and self.actual else None


def estimate_lines(rows: list[dict], models: list, unit: str) -> list[EstimateLine]:
    lines = []
    for model_id in sorted({row["model_id"] for row in rows}):
        mine = [row for row in rows if row["model_id"] == model_id]
        priced = all(row["hours"] is not None for row in mine)
        totals = {name: sum(row[name] * row["runs"] for row in mine) if priced else None
                  for name in ("hours", "low_hours", "high_hours")}
        section_of = next((m for m in models if m.model_id == model_id), None)
        runs = section_of.experiments + section_of.confirmations if section_of else []
        actual = sum(run_cost(e, unit) for e in runs)
        kinds = Counter(basis_kind(row["basis"]) for row in mine)
        bases = [f"{count} {kind}" for kind, count in sorted(kinds.items())]
        lines.append(EstimateLine(model_id, totals["hours"], totals["low_hours"], totals["high_hours"], actual, bases))
    return lines


def training_modes(experiments: list[StoredExperiment]) -> str | None:
    """How a model's runs trained, where the plan leaves it to the run (compile, "auto"
    checkpointing), what activation checkpointing cost where runs went both ways, and what the
    saves wrote."""
    ran = [e for e in experiments if e.samples_per_second]
    if not ran:
        return None
    parts = []
    compiled = [e for e in ran if e.compiled]
    if compiled:
        seconds = [e.compile_seconds for e in compiled if e.compile_seconds is not None]
        spread = f" (compiling: {max(seconds):.1f} s at most, {min(seconds):.1f} s at least)" if seconds else ""
        parts.append(f"compiled in {len(compiled)} of {len(ran)} runs{spread}")
    on = [e.samples_per_second for e in ran if e.activation_checkpointing]
    off = [e.samples_per_second for e in ran if e.activation_checkpointing is False]
    if on and off:
        parts.append(f"activation checkpointing on in {len(on)} runs at {mean(on):.1f} samples/s, off in {len(off)} "
                     f"at {mean(off):.1f} samples/s: it cost {1 - mean(on) / mean(off):.0%} of the throughput")
    elif on:
        parts.append(f"activation checkpointing on in all {len(on)} runs ({mean(on):.1f} samples/s); its cost is "
                     "not measured here (gradient_checkpointing = \"auto\" turns it on only when memory runs out, "
                     "and `make gpu-bench` measures both)")
    saved = [e for e in ran if e.checkpoint_bytes_written is not None]
    if saved:
        full = sum(e.full_checkpoints_saved or 0 for e in saved)
        model = sum(e.model_checkpoints_saved or 0 for e in saved)
        parts.append(f"saves wrote {sum(e.checkpoint_bytes_written for e in saved) / 2**20:,.1f} MiB over "
                     f"{len(saved)} runs: {model} of the model only (a new best), {full} with the full resumable "
                     "state (every full_checkpoint_minutes, and on SIGTERM)")
    return "; ".join(parts) if parts else None


@dataclass(frozen=True)
class ModelSection:
    model_id: str
    experiments: list[StoredExperiment]
    best: StoredExperiment | None
    gpu_hours: float
    gpu_hours_saved: float
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
    gpu_hours: float
    previous_gpu_hours: float
    beyond_interval: bool


@dataclass(frozen=True)
class RunReport:
    dag_id: str
    run_id: str
    models: list[ModelSection]
    experiment_count: int
    failed_count: int
    gpu_hours: float
    gpu_hours_saved: float
    any_stand_in: bool
    cost_unit: str  # "GPU-hour", or "wall-clock hour" when nothing ran on a GPU
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


def configuration(e: StoredExperiment) -> str:
    return f"lr {e.learning_rate:g}, batch {e.batch_size}, {e.num_epochs} epochs, wd {e.weight_decay:g}"


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


def mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def section(model_id: str, experiments: list[StoredExperiment], curves: dict[int, list]) -> ModelSection:
    grid = [e for e in experiments if e.confirmation_of is None]
    confirmations = [e for e in experiments if e.confirmation_of is not None]
    ranked = ranked_by_validation(grid)
    best = ranked[0] if ranked else None
    memory = [e.peak_memory_bytes for e in experiments if e.peak_memory_bytes]
    curve = {f"{model_id} (best: lr {best.learning_rate:g}, batch {best.batch_size})":
             curves.get(best.experiment_id, [])} if best else {}
    runner_up = (compare(f"the chosen configuration ({configuration(ranked[0])})", ranked[0],
                         f"the next by validation F1 ({configuration(ranked[1])})", ranked[1])
                 if len(ranked) > 1 else None)
    return ModelSection(
        model_id, grid, best, sum(e.gpu_hours for e in experiments),
        sum(gpu_hours_saved(e) for e in experiments), sum(e.wall_seconds or 0 for e in experiments),
        [e for e in experiments if not e.succeeded],
        mean([e.time_to_best_seconds for e in grid if e.time_to_best_seconds is not None]),
        max(memory) if memory else None, heatmaps(model_id, grid),
        charts.learning_curves(f"{model_id}: validation F1 of the best run", curve) if curve else "",
        confirmations, seed_summary(best, confirmations), runner_up, training_modes(experiments))


def cost_of(model: ModelSection, unit: str) -> float:
    return model.gpu_hours if unit == "GPU-hour" else model.wall_seconds / 3600


def recommend(models: list[ModelSection], unit: str) -> tuple[list[Recommendation], Comparison | None]:
    """Most accurate; best F1 per unit of cost; fastest within one F1 point of the best. Every
    choice is made on validation F1; the test F1 of what was chosen is only reported, and the
    verdict between the top two models comes from a paired test on the same test rows. Stand-ins
    are never ranked against real models: where a run has both, only the real ones compete."""
    scored = [m for m in models if m.best and m.best.validation_f1 is not None]
    if any(not m.best.is_stand_in for m in scored):
        scored = [m for m in scored if not m.best.is_stand_in]
    if not scored:
        return [Recommendation("Most accurate", None, "no model finished an experiment")], None
    ranked = sorted(scored, key=lambda m: m.best.validation_f1, reverse=True)
    top = ranked[0]
    picks = [Recommendation("Most accurate", top.model_id, f"validation F1 {top.best.validation_f1:.3f}, "
                                                           f"test F1 {_score(top.best.test_f1)}")]
    costed = [m for m in scored if cost_of(m, unit) > 0]
    if costed:
        value = max(costed, key=lambda m: m.best.validation_f1 / cost_of(m, unit))
        picks.append(Recommendation(f"Best F1 per {unit}", value.model_id,
                                    f"{value.best.validation_f1 / cost_of(value, unit):.3f} validation F1 per "
                                    f"{unit} for the sweep"))
    close = [m for m in scored
             if m.best.validation_f1 >= top.best.validation_f1 - WITHIN_F1 and m.best.latency_batch1_ms]
    if close:
        fastest = min(close, key=lambda m: m.best.latency_batch1_ms)
        picks.append(Recommendation("Fastest within one F1 point of the best", fastest.model_id,
                                    f"{fastest.best.latency_batch1_ms:.1f} ms per example at batch 1"))
    verdict = None
    if len(ranked) > 1:
        second = ranked[1]
        verdict = compare(top.model_id, top.best, second.model_id, second.best, top.seeds, second.seeds)
    return picks, verdict


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def changes(models: list[ModelSection], previous_records: list[StoredExperiment]) -> list[Change]:
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
        result.append(Change(model.model_id, now_f1, old_f1, delta, model.gpu_hours,
                             sum(row.gpu_hours for row in old_rows), outside))
    return result


def sections(records: list[StoredExperiment], curves: dict[int, list]) -> list[ModelSection]:
    rows = records
    return [section(model_id, [r for r in rows if r.model_id == model_id], curves)
            for model_id in sorted({r.model_id for r in rows})]


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
                 estimate_rows: list[dict] | None = None) -> RunReport:
    models = sections(records, curves or {})
    rows = [e for m in models for e in m.experiments]
    gpu_hours = sum(m.gpu_hours for m in models)
    unit = "GPU-hour" if gpu_hours > 0 else "wall-clock hour"
    picks, verdict = recommend(models, unit)
    one_class, baseline = one_class_notes({m.model_id: m.best for m in models})
    every_row = rows + [e for m in models for e in m.confirmations]
    seed_cost = sum(run_cost(e, unit) for m in models for e in m.confirmations)
    estimate_rows = estimate_rows or []
    # The estimate's unit decides how actual cost is counted beside it: CPU-hours are wall-clock hours.
    estimate_unit = estimate_rows[0]["unit"] if estimate_rows else None
    compare_unit = "GPU-hour" if estimate_unit == "GPU-hour" else "wall-clock hour"
    return RunReport(dag_id, run_id, models, len(every_row), sum(not e.succeeded for e in every_row), gpu_hours,
                     sum(m.gpu_hours_saved for m in models), any(e.is_stand_in for e in rows), unit,
                     {m.model_id: cost_of(m, unit) for m in models}, [e for m in models for e in m.failures],
                     picks, verdict, previous_id, changes(models, previous_records or []) if previous_id else [],
                     metric_description(rows), leakage=leakage_notes(rows), seed_cost_gpu_hours=seed_cost,
                     one_class=one_class, positive_baseline_f1=baseline,
                     any_real=any(not e.is_stand_in for e in rows),
                     pruned=[PrunedRun.of(e, unit) for e in rows if e.stop_reason == StopReason.PRUNED],
                     estimates=estimate_lines(estimate_rows, models, compare_unit), estimate_unit=estimate_unit,
                     max_gpu_hours=next((r["max_gpu_hours"] for r in estimate_rows if r["max_gpu_hours"]), None))


def environment(autoescape: bool) -> jinja2.Environment:
    """HTML autoescaped; Markdown with every value's HTML escaped too, since Markdown passes raw
    HTML through (a model id, a label or an error message could carry a <script>)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=None if autoescape else markdown_text)
    env.filters["score"] = lambda value: "–" if value is None else f"{value:.3f}"
    env.filters["signed"] = lambda value: "–" if value is None else f"{value:+.3f}"
    env.filters["number"] = lambda value, digits=1: "–" if value is None else f"{value:,.{digits}f}"
    env.filters["mebibytes"] = lambda value: "–" if not value else f"{value / 2**20:,.1f} MiB"
    env.filters["hours"] = lambda seconds: "–" if seconds is None else f"{seconds / 3600:,.3f}"
    env.filters["millions"] = lambda value: "–" if not value else f"{value / 1e6:,.2f} M"
    return env


def markdown_text(value):
    """A value as Markdown text: HTML's special characters escaped, everything else as it is."""
    return html.escape(value, quote=False) if isinstance(value, str) else value


def render(report: RunReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(environment(False).get_template("report.md.j2").render(report=report))
    html_path = out_dir / "report.html"
    html_path.write_text(environment(True).get_template("report.html.j2").render(report=report))
    return html_path


def render_run_report(url: str, dag_id: str, run_id: str, out_dir: Path) -> Path:
    """Render the report of one run from the results DB into out_dir; return the HTML file."""
    records = run_experiments(url, dag_id, run_id)
    previous_id = previous_run_id(url, dag_id, run_id)
    report = build_report(dag_id, run_id, records, evaluation_curves(url, [r.experiment_id for r in records]),
                          previous_id, run_experiments(url, dag_id, previous_id) if previous_id else [],
                          run_estimate(url, dag_id, run_id))
    return render(report, out_dir)
