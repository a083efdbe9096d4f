"""Asynchronous successive halving (ASHA) across one model's grid in one sweep run: the callback.
The rules (where the rungs are, who continues, the safeguards) are engine/halving.py's.

At the first evaluation at or past a rung, a run reads from the results database how its peers (the
same model in the same sweep run, seed reruns left out) stood when they passed the same rung, and
stops if it is not in the top 1/reduction_factor of all the runs that reached it and no safeguard
keeps it. Nothing is pruned while fewer than reduction_factor peers have reached a rung, so the first
reduction_factor runs of a model are never pruned; nor when there is no database or it cannot be
read. Every decision is printed, and a pruned run keeps its best checkpoint, which is evaluated on
test like any other.

Experiments running at once on several GPUs compare against whatever their peers have recorded so
far (the live rows of training/engine/callbacks.py LiveResults): that is what makes it asynchronous.
"""

from __future__ import annotations

import sqlalchemy as sa
from transformers import TrainerCallback

from training.engine.halving import Curve, Decision, Rules, decide
from training.plan import planned_samples
from training.results.history import peer_points


class SuccessiveHalving(TrainerCallback):
    def __init__(self, spec, train_rows: int, experiment_key: str, validation_rows: int | None = None, log=print):
        self.spec, self.key, self.log, self.validation_rows = spec, experiment_key, log, validation_rows
        self.rules = Rules.of(spec.pruning)
        hp = spec.hyperparameters
        self.samples_per_step = hp.batch_size * hp.gradient_accumulation_steps
        self.train_rows = train_rows
        self.reference = max(self.planned(b, a, e) for b, a, e in spec.pruning["grid"])
        self.own_planned = self.planned(hp.batch_size, hp.gradient_accumulation_steps, hp.num_epochs)
        self.rungs = [(f, self.rules.rung_samples(f, self.own_planned, self.reference)) for f in self.rules.fractions()]
        self.points: list[tuple[int, float, float | None]] = []
        self.decided: set[int] = set()
        self.decisions: list[Decision] = []
        self.training = True
        if not spec.database_url:
            self.log("pruning: no results database, so no peers to compare with: nothing will be pruned")
        else:
            basis = ("this run's planned samples" if self.rules.rungs_of == "own"
                     else "the largest planned run of the grid")
            total = self.own_planned if self.rules.rungs_of == "own" else self.reference
            self.log(f"pruning (ASHA): reduction factor {self.rules.reduction_factor}, rungs at "
                     + ", ".join(f"{f:g} ({s:,.0f} samples)" for f, s in self.rungs)
                     + f" of {basis} ({total:,} samples)"
                     + "".join(f"; {guard}" for guard in self.rules.safeguards()))

    def planned(self, batch: int, accumulation: int, epochs: int) -> int:
        return planned_samples(self.train_rows, batch, accumulation, epochs, self.spec.max_steps)

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

    def peers(self) -> list[Curve] | None:
        if not self.spec.database_url:
            return None
        rows = peer_points(self.spec.database_url, self.spec.dag_id, self.spec.run_id, self.spec.model_id, self.key)
        return [Curve(key, p.learning_rate, self.planned(p.batch_size, p.gradient_accumulation_steps, p.num_epochs),
                      tuple(p.points), p.pruned) for key, p in rows.items()]

    def decide(self, index: int, fraction: float, rung_samples: float, samples: int) -> Decision | None:
        rung = index + 1
        try:
            peers = self.peers()
        except sa.exc.SQLAlchemyError as error:
            self.log(f"pruning: rung {rung}: results database unavailable ({type(error).__name__}): nothing "
                     "pruned, training continues")
            return None
        if peers is None:
            return None
        own = Curve(self.key, self.spec.hyperparameters.learning_rate, self.own_planned, tuple(self.points))
        decision = decide(self.rules, index, own, peers, self.reference, self.validation_rows)
        if decision is None:
            reached = sum(1 for p in peers if p.points and p.points[-1][0] >= self.rules.rung_samples(
                fraction, p.planned_samples, self.reference))
            self.log(f"pruning: rung {rung} ({fraction:g}): {reached} peer(s) have reached it, fewer than the "
                     f"reduction factor {self.rules.reduction_factor}: nothing to compare with, training continues")
            return None
        verb = ("pruned: stops here" if decision.pruned
                else f"continues ({decision.spared})" if decision.spared else "continues")
        self.log(f"pruning: rung {rung} ({fraction:g}, {samples:,} samples seen): best validation F1 "
                 f"{decision.f1:.4f} against a threshold of {decision.threshold_f1:.4f} (top {decision.kept} of "
                 f"{decision.peers + 1} runs that reached it, ties by validation loss): {verb}")
        return decision
