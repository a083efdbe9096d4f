"""The tests' entry point for a run with faults injected: `python -m tests.training.faults
[--max-batch N] [--seconds-per-step S] [--kill-at-step N] [--take-lock-at-step N] -- run-experiment
...` runs the training package's own run-experiment command with these added to the engine
(engine/trainer.py Instruments), as the Trainer takes extra callbacks. Nothing in the product reads
them."""

from __future__ import annotations

import argparse
import os
import signal
import sys

import torch
from transformers import TrainerCallback


class SimulatedMemoryLimit(TrainerCallback):
    """CUDA's out-of-memory error when the per-device batch exceeds a limit, on machines without a
    GPU; activation checkpointing, which keeps fewer activations, doubles the batch that fits."""

    def __init__(self, max_batch: int):
        self.max_batch = max_batch

    def on_step_begin(self, args, state, control, **kwargs):
        checkpointing = bool(getattr(args, "activation_checkpointing", False))
        limit = self.max_batch * (2 if checkpointing else 1)
        if args.per_device_train_batch_size > limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory (simulated: per-device batch {args.per_device_train_batch_size} > {limit}"
                f"{', with activation checkpointing' if checkpointing else ''})")


class SimulatedKill(TrainerCallback):
    """A lost machine at a known step: SIGKILL at the end of that step (after its save, if it
    saves), with no cleanup."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        self._maybe_kill(state)

    def on_step_end(self, args, state, control, **kwargs):
        if not control.should_save:  # a step that saves is killed after its save (on_save)
            self._maybe_kill(state)

    def _maybe_kill(self, state) -> None:
        if state.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class LockTakenElsewhere(TrainerCallback):
    """At the end of a known step, what a Postgres restart and a quick retry elsewhere do to the run's
    cross-host lock: its session ends and another connection takes the lock before the keeper can.
    Returns once the keeper has found out, so the run's next step is the first to know."""

    def __init__(self, step: int):
        self.step, self.elsewhere = step, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != self.step:
            return
        import threading
        import time

        import sqlalchemy as sa

        from training.engine.locks import LockKeeper, take

        keeper = next(thread for thread in threading.enumerate() if isinstance(thread, LockKeeper))
        other = sa.create_engine(keeper.engine.url, isolation_level="AUTOCOMMIT",
                                 connect_args={"application_name": "code-sweep the retry elsewhere"})
        self.elsewhere = other.connect()  # held to the end of the process, as the other host holds it
        backend = keeper.connection.connection.dbapi_connection.info.backend_pid  # the lock's session (psycopg 3)
        self.elsewhere.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        deadline = time.monotonic() + 30
        while not take(self.elsewhere, keeper.lock_id):
            assert time.monotonic() < deadline, "the terminated session kept the lock"
            time.sleep(0.01)
        while keeper.lost_to is None:  # the keeper looks every 15 s
            assert time.monotonic() < deadline + 60, "the keeper never noticed"
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    from training.__main__ import command_line, handled, run_experiment_command
    from training.engine.trainer import Instruments

    split = argv.index("--") if "--" in argv else len(argv)
    faults = argparse.ArgumentParser(prog="python -m tests.training.faults")
    faults.add_argument("--max-batch", type=int, default=None, help="simulated GPU memory: the largest batch")
    faults.add_argument("--seconds-per-step", type=float, default=None,
                        help="the full-save clock: the step count times this, so which save is full is fixed")
    faults.add_argument("--kill-at-step", type=int, default=None, help="SIGKILL at the end of this step")
    faults.add_argument("--take-lock-at-step", type=int, default=None,
                        help="end the cross-host lock's session and take the lock from another connection")
    chosen = faults.parse_args(argv[:split])
    args = command_line().parse_args(argv[split + 1:])
    if args.command != "run-experiment":
        faults.error("faults are injected into run-experiment only")
    callbacks = [*([SimulatedMemoryLimit(chosen.max_batch)] if chosen.max_batch is not None else []),
                 *([SimulatedKill(chosen.kill_at_step)] if chosen.kill_at_step is not None else []),
                 *([LockTakenElsewhere(chosen.take_lock_at_step)] if chosen.take_lock_at_step is not None else [])]
    seconds = chosen.seconds_per_step
    clock = (lambda state: state.global_step * seconds) if seconds is not None else None
    return handled(run_experiment_command, args, Instruments(tuple(callbacks), clock))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
