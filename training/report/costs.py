"""The resource side of the run report: what each run cost (GPU-hours, or CPU-hours: wall-clock
hours without a GPU), what early stopping saved, the pruned runs, the launch estimate against what was spent, and
how the runs trained (compiled, activation checkpointing, saves)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from training.plan import configuration_label
from training.results.estimates import basis_kind
from training.results.record import StopReason, StoredExperiment


def mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def cost_unit(experiments: list[StoredExperiment]) -> str:
    """The one unit a report counts cost in: GPU-hours when anything ran on a GPU, else CPU-hours
    (the wall-clock hours of experiments that ran without one), the estimate's unit there too."""
    return "GPU-hour" if any(e.gpu_hours for e in experiments) else "CPU-hour"


def run_cost(experiment: StoredExperiment, unit: str) -> float:
    """One experiment's cost in the report's unit: GPU-hours, or wall-clock hours without a GPU."""
    return experiment.gpu_hours if unit == "GPU-hour" else (experiment.wall_seconds or 0) / 3600


def early_stop_saved(experiment: StoredExperiment, unit: str) -> float:
    """Steps an early stop did not run, priced at this experiment's cost per step."""
    if experiment.stop_reason != StopReason.EARLY_STOPPED or not experiment.steps_run or not experiment.steps_planned:
        return 0.0
    return run_cost(experiment, unit) * max(experiment.steps_planned - experiment.steps_run, 0) / experiment.steps_run


@dataclass(frozen=True)
class PrunedRun:
    """A run successive halving stopped: where, against what, and what stopping saved at most (the
    samples it did not train, at its own cost per sample; it might have stopped early anyway)."""

    experiment: StoredExperiment
    saved: float  # in the report's cost unit

    @property
    def configuration(self) -> str:
        return configuration_label(self.experiment)

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
