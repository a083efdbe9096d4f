"""One training run, start to finish, in three phases: prepare (data, key, folder), train (the
Hugging Face Trainer with the plan's settings, OOM back-off, resume), and finish (the best
checkpoint by validation F1, test F1 with it, accounting). The result is an ExperimentResult,
also written as result.json beside the checkpoint.

Runs in its own process (python -m training run-experiment) so that a GPU's memory is freed and
a hung run can be killed; it never imports Airflow. One process at a time holds an experiment.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import socket
import traceback
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from training.data.contract import DataError
from training.engine.finish import finish, read_trained, refinish
from training.engine.prepare import UNKNOWN_FINGERPRINT, Prepared, experiment_key, identity, prepare
from training.engine.recovery import RESULT_FILE, DiskFull, close_ledger, disk_full, finished_result
from training.engine.trainer import Instruments, TrainingInterrupted, train
from training.results.files import write_json
from training.results.record import ExperimentResult, StopReason
from training.spec import ExperimentSpec


def reuse_earlier_result(prepared: Prepared) -> ExperimentResult | None:
    """With reuse on, an earlier run's success with the same experiment key (same model,
    hyperparameters, data and settings) is copied into this run instead of trained again."""
    spec = prepared.spec
    if not (spec.reuse_results and spec.database_url):
        return None
    from training.results.store import find_succeeded

    earlier = find_succeeded(spec.database_url, prepared.key, spec.dag_id, spec.run_id)
    if earlier is None:
        return None
    print(f"reusing the result of experiment {prepared.key} from run {earlier.run_id}: nothing to train")
    now = datetime.now(UTC).isoformat()
    copied = ExperimentResult.from_dict(earlier.to_dict())
    return dataclasses.replace(
        copied, dag_id=spec.dag_id, run_id=spec.run_id, run_type=spec.run_type, reused_from_run_id=earlier.run_id,
        attempt_count=1, wall_seconds=0.0, gpu_hours=0.0, started_at=now, finished_at=now,
        attempts=[{"attempt": 1, "seconds": 0.0, "gpu_count": 0, "outcome": "reused"}])


def failed_result(spec: ExperimentSpec, prepared: Prepared | None, error: BaseException,
                  started_at: datetime, reason: StopReason = StopReason.FAILED) -> ExperimentResult:
    """The result of a run that raised: enough to show the failure in the results and the report,
    with the time of every attempt so far (the ledger survives in the experiment folder)."""
    if prepared is not None:
        base, output_dir = prepared.identity, prepared.output_dir
    else:  # the data itself is what failed: no fingerprint, so the key says so
        key = experiment_key(spec, UNKNOWN_FINGERPRINT)
        base = identity(spec, key, None)
        output_dir = spec.runtime().experiment_dir(spec.dag_id, spec.run_id, key)
    attempts = close_ledger(output_dir, reason.value, started_at)
    finished_at = datetime.now(UTC)
    return dataclasses.replace(
        base, stop_reason=reason, attempt_count=max(len(attempts), 1), attempts=attempts,
        wall_seconds=sum(a["seconds"] for a in attempts) or (finished_at - started_at).total_seconds(),
        gpu_count=max((a["gpu_count"] for a in attempts), default=0),
        gpu_hours=sum(a["seconds"] * a["gpu_count"] for a in attempts) / 3600,
        started_at=started_at.isoformat(), finished_at=finished_at.isoformat(),
        error=str(error) if isinstance(error, (DataError, DiskFull)) else f"{type(error).__name__}: {error}")


class ExperimentRunning(RuntimeError):
    """Another process is running this experiment (a lost worker and its retry, say)."""


@contextmanager
def experiment_lock(folder: Path):
    """One run per experiment at a time: an flock on the experiment folder, released by the kernel
    however the holder ends. A second run exits at once, naming the holder, touching nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "experiment.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ExperimentRunning(f"experiment {folder.name} is already running ({holder}); this run exits "
                                "without touching its files") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def complete(prepared: Prepared, time_limit_seconds: float | None, started_at: datetime,
             instruments: Instruments | None = None) -> ExperimentResult:
    """The result of a prepared experiment, holding its lock: already finished, finished again from
    the best model an earlier attempt trained, reused, or trained now. A usable result is also
    written as result.json beside the checkpoint, which is how a retry knows the work is done."""

    earlier = finished_result(prepared.output_dir)
    if earlier is not None:
        # A retry after the result was written but not recorded (say the database was down):
        # the work is done, only the recording is left.
        print(f"experiment already finished; its result is {prepared.output_dir / RESULT_FILE}")
        return earlier
    trained = read_trained(prepared.output_dir)
    if trained is not None:
        print(f"training finished in an earlier attempt ({trained.stop_reason.value} at step {trained.steps_run}): "
              "finishing from its best model, without training again")
        result = refinish(prepared, trained)
    else:
        result = reuse_earlier_result(prepared) or finish(
            train(prepared, time_limit_seconds, started_at, instruments or Instruments()))
    write_json(prepared.output_dir / RESULT_FILE, result.to_dict())
    close_ledger(prepared.output_dir, result.stop_reason.value)
    return result


def run_experiment(spec: ExperimentSpec, time_limit_seconds: float | None = None,
                   instruments: Instruments | None = None) -> ExperimentResult:
    """Train and evaluate one experiment and return its result; a run that raises returns a failed
    result naming the error (invalid data: its own stop reason). Raises ExperimentRunning when
    another process holds the experiment."""
    started_at = datetime.now(UTC)
    try:
        prepared = prepare(spec)
    except DataError as error:  # the data breaks the contract: no retry can change that
        print(f"invalid data: {error}")
        return failed_result(spec, None, error, started_at, StopReason.INVALID_DATA)
    except Exception as error:
        traceback.print_exc()
        return failed_result(spec, None, error, started_at)
    with experiment_lock(prepared.output_dir):
        try:
            return complete(prepared, time_limit_seconds, started_at, instruments)
        except TrainingInterrupted:
            raise  # not finished, not failed: the retry resumes from the full save
        except Exception as error:  # recorded as a failed experiment; the task then fails
            traceback.print_exc()
            full = disk_full(error, prepared.output_dir)
            if full is not None:
                print(f"error: {full}")
            return failed_result(spec, prepared, full or error, started_at)
