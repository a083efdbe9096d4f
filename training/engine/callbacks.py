"""Trainer callbacks that watch a run: the learning curve, a non-finite loss, the time budget,
the attempt's heartbeat, the live rows and the cross-host lock."""

from __future__ import annotations

import dataclasses
import math
import time

import sqlalchemy
from transformers import TrainerCallback

from training.results import store as results
from training.results.connection import engine_for
from training.results.record import ExperimentResult


class EvaluationRecorder(TrainerCallback):
    """Stamps each periodic evaluation in the Trainer's own log history with the experiment's
    elapsed seconds, over every attempt. The history is saved with each checkpoint and restored on
    resume, so the learning curve and the time to the best checkpoint survive a killed attempt."""

    def __init__(self, started: float, seconds_before: float):
        self.started, self.seconds_before = started, seconds_before  # this attempt's start; earlier attempts
        self.training = True  # the evaluations after training re-measure; they are not curve points

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        entry = state.log_history[-1] if state.log_history else {}
        if self.training and "eval_f1" in entry and entry.get("step") == state.global_step:
            entry["elapsed_seconds"] = round(self.seconds_before + time.monotonic() - self.started, 3)


def learning_curve(state) -> list[dict]:
    """Every periodic evaluation in a Trainer state's log history, in step order."""
    return [{"step": entry["step"], "epoch": entry.get("epoch"), "loss": entry.get("eval_loss"),
             "f1": entry["eval_f1"], "elapsed_seconds": entry.get("elapsed_seconds")}
            for entry in state.log_history if "eval_f1" in entry and "elapsed_seconds" in entry]


class NonFiniteLossStop(TrainerCallback):
    """Stops training when a logged loss is NaN or infinite, instead of training on garbage.

    Checked at the logging cadence (every 25 steps in the plan): checking every step would force a
    GPU sync per step. Needs logging_nan_inf_filter=False, or the Trainer hides the value.
    """

    def __init__(self):
        self.triggered_at_step = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.triggered_at_step = state.global_step
            control.should_training_stop = True
            control.should_save = False  # never let a poisoned model become "last"


class TimeBudget(TrainerCallback):
    """Stops training gracefully when the run's time budget is spent, so it still keeps its best."""

    def __init__(self, started: float, limit_seconds: float | None):
        self.started, self.limit_seconds = started, limit_seconds
        self.triggered = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.limit_seconds and time.monotonic() - self.started > self.limit_seconds:
            self.triggered = True
            control.should_training_stop = True


class CompileTimer(TrainerCallback):
    """How long compiling took, as the first training step's excess over the median of the next
    ones (the first step of a compiled model traces and compiles it; later steps only run it)."""

    def __init__(self):
        self.durations: list[float] = []
        self.started = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None and len(self.durations) < 12:
            self.durations.append(time.perf_counter() - self.started)

    @property
    def seconds(self) -> float | None:
        if len(self.durations) < 2:
            return None
        rest = sorted(self.durations[1:])
        return max(self.durations[0] - rest[len(rest) // 2], 0.0)


class Heartbeat(TrainerCallback):
    """Keeps the attempt ledger current, so an attempt killed without warning still counts its time."""

    def __init__(self, ledger):
        self.ledger = ledger

    def on_log(self, args, state, control, **kwargs):
        self.ledger.beat(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        self.ledger.beat(state.global_step)


class LiveResults(TrainerCallback):
    """Writes the experiment's row (status running) when training starts and each evaluation as it
    happens, so F1 is visible while training runs. Best effort: a database that is down costs the
    live view only; the final record (and `db sync`) bring everything in later."""

    def __init__(self, database_url: str | None, identity: ExperimentResult, attempt_count: int):
        self.identity = dataclasses.replace(identity, attempt_count=attempt_count)
        self.experiment_id = None
        self.training = True  # the best checkpoint's evaluations after training are not curve points
        self.engine = engine_for(database_url) if database_url else None

    def _write(self, action) -> None:
        if self.engine is None:
            return
        try:
            with self.engine.begin() as connection:
                action(connection)
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"results DB unavailable, continuing without live results: {type(error).__name__}")

    def on_train_begin(self, args, state, control, **kwargs):
        def start(connection):
            self.experiment_id = results.upsert_experiment(connection, self.identity, status="running")
        self._write(start)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.training or self.experiment_id is None or not metrics or "eval_f1" not in metrics:
            return
        point = {"experiment_id": self.experiment_id, "step": state.global_step, "epoch": state.epoch,
                 "loss": metrics.get("eval_loss"), "f1": metrics["eval_f1"], "elapsed_seconds": None}
        self._write(lambda connection: connection.execute(results.INSERT_POINT, point))

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False
        if self.engine is not None:
            self.engine.dispose()


class LockWatch(TrainerCallback):
    """Stops the run at the step after its cross-host lock was lost to another process (engine/locks.py),
    before that step's evaluation or save: the other process owns the experiment's files now."""

    def __init__(self, holding):
        self.holding = holding

    def on_step_end(self, args, state, control, **kwargs):
        self.holding.check()
