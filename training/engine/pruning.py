"""Asynchronous successive halving (ASHA) across one model's grid in one sweep run.

Rungs are measured in training samples seen, as fractions of the largest planned run of the model's
grid: with min_fraction 0.1 and reduction_factor 3, at 10%, 30% and 90% of that run's samples. So a
batch-32 run and a batch-16 run, or a 3-epoch and a 5-epoch run, are compared after the same amount
of data. At the first evaluation at or past a rung, a run reads from the results database how its
peers (the same model in the same sweep run, seed reruns left out) stood when they passed the same
rung, and stops if it is not in the top 1/reduction_factor of all the runs that reached it.

A run's standing at a rung is its best validation F1 so far (what its best checkpoint would be),
ties broken by the validation loss of that evaluation (lower ranks higher): stand-ins that all
predict one class tie on F1. Nothing is pruned while fewer than reduction_factor peers have reached a
rung, so the first reduction_factor runs of a model are never pruned; nor when there is no database
or it cannot be read. Every decision is printed, and a pruned run keeps its best checkpoint, which is
evaluated on test like any other.

Experiments running at once on several GPUs compare against whatever their peers have recorded so
far (the live rows of training/engine/callbacks.py LiveResults): that is what makes it asynchronous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sqlalchemy as sa
from transformers import TrainerCallback

from training.plan import Pruning, planned_samples
from training.results.history import peer_points


def standing(points: list[tuple[int, float, float | None]], rung_samples: float) -> tuple | None:
    """(best F1 so far, -loss of that evaluation) at the first evaluation at or past the rung; None
    when the points never reach it. points: (samples seen, F1, loss) in step order."""
    best = None
    for samples, f1, loss in points:
        key = (f1, -loss if loss is not None else -math.inf)
        best = key if best is None or key > best else best
        if samples >= rung_samples:
            return best
    return None


@dataclass(frozen=True)
class Decision:
    rung: int  # 1-based
    fraction: float  # of the reference run's samples
    samples: int  # this run's samples seen at the evaluation that decided
    f1: float  # its best validation F1 so far
    threshold_f1: float  # the F1 it had to reach: the lowest kept standing
    peers: int  # peers that had reached the rung
    kept: int  # how many of peers + itself continue
    pruned: bool


class SuccessiveHalving(TrainerCallback):
    def __init__(self, spec, train_rows: int, experiment_key: str, log=print):
        settings = spec.pruning
        self.spec, self.key, self.log = spec, experiment_key, log
        self.factor = settings["reduction_factor"]
        hp = spec.hyperparameters
        self.samples_per_step = hp.batch_size * hp.gradient_accumulation_steps
        reference = max(planned_samples(train_rows, b, a, e, spec.max_steps) for b, a, e in settings["grid"])
        fractions = Pruning(settings["method"], self.factor, settings["min_fraction"]).rungs()
        self.rungs = [(f, f * reference) for f in fractions]
        self.points: list[tuple[int, float, float | None]] = []
        self.decided: set[int] = set()
        self.decisions: list[Decision] = []
        self.training = True
        if not spec.database_url:
            self.log("pruning: no results database, so no peers to compare with: nothing will be pruned")
        else:
            self.log(f"pruning (ASHA): reduction factor {self.factor}, rungs at "
                     + ", ".join(f"{f:g} ({s:,.0f} samples)" for f, s in self.rungs)
                     + f" of the largest planned run of the grid ({reference:,} samples)")

    @property
    def pruned(self) -> Decision | None:
        return next((d for d in self.decisions if d.pruned), None)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed attempt: the evaluations before the checkpoint count, and the rungs they passed
        # were decided then (the run continued past them).
        self.points = [(entry["step"] * self.samples_per_step, entry["eval_f1"], entry.get("eval_loss"))
                       for entry in state.log_history if "eval_f1" in entry]
        seen = self.points[-1][0] if self.points else 0
        self.decided = {index for index, (_, samples) in enumerate(self.rungs) if seen >= samples}

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False  # the evaluations of the best checkpoint after training are not rung points

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.training or not metrics or "eval_f1" not in metrics:
            return
        samples = state.global_step * self.samples_per_step
        self.points.append((samples, metrics["eval_f1"], metrics.get("eval_loss")))
        for index, (fraction, rung_samples) in enumerate(self.rungs):
            if index in self.decided or samples < rung_samples:
                continue
            self.decided.add(index)
            decision = self.decide(index, fraction, rung_samples, samples)
            if decision is not None:
                self.decisions.append(decision)
                if decision.pruned:
                    control.should_training_stop = True
                    return

    def peer_points(self) -> dict[str, list] | None:
        if not self.spec.database_url:
            return None
        return peer_points(self.spec.database_url, self.spec.dag_id, self.spec.run_id, self.spec.model_id, self.key)

    def decide(self, index: int, fraction: float, rung_samples: float, samples: int) -> Decision | None:
        rung = index + 1
        try:
            peers = self.peer_points()
        except sa.exc.SQLAlchemyError as error:
            self.log(f"pruning: rung {rung}: results database unavailable ({type(error).__name__}): nothing "
                     "pruned, training continues")
            return None
        if peers is None:
            return None
        reached = [s for s in (standing(points, rung_samples) for points in peers.values()) if s is not None]
        own = standing(self.points, rung_samples)
        if len(reached) < self.factor:
            self.log(f"pruning: rung {rung} ({fraction:g} of the reference run): {len(reached)} peer(s) have "
                     f"reached it, fewer than the reduction factor {self.factor}: nothing to compare with, "
                     "training continues")
            return None
        ranked = sorted(reached + [own], reverse=True)
        kept = max(1, len(ranked) // self.factor)
        threshold = ranked[kept - 1]
        decision = Decision(rung, fraction, samples, own[0], threshold[0], len(reached), kept, own < threshold)
        verb = "pruned: stops here" if decision.pruned else "continues"
        self.log(f"pruning: rung {rung} ({fraction:g} of the reference run, {samples:,} samples seen): best "
                 f"validation F1 {own[0]:.4f} against a threshold of {threshold[0]:.4f} (top {kept} of "
                 f"{len(ranked)} runs that reached it, ties by validation loss): {verb}")
        return decision
