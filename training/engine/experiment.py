"""One training run, start to finish, in three phases: prepare (data, key, folder), train (the
Hugging Face Trainer with the plan's settings, OOM back-off, resume), and finish (the best
checkpoint by validation F1, test F1 with it, accounting). The result is an ExperimentResult,
also written as result.json beside the checkpoint.

Runs in its own process (python -m training run-experiment) so that a GPU's memory is freed and
a hung run can be killed; it never imports Airflow. One process at a time, on any host, holds an
experiment (engine/locks.py).
"""

from __future__ import annotations

import dataclasses
import traceback
from datetime import UTC, datetime
from pathlib import Path

from training.artifacts import ArtifactStore, StoreError
from training.data.contract import DataError
from training.engine.finish import BEST_DIR, finish, read_trained, refinish
from training.engine.locks import ExperimentRunning, cross_host_lock, experiment_lock
from training.engine.prepare import UNKNOWN_FINGERPRINT, Prepared, experiment_key, identity, prepare
from training.engine.recovery import RESULT_FILE, DiskFull, close_ledger, disk_full, finished_result
from training.engine.trainer import Instruments, TrainingInterrupted, train
from training.engine.uploads import OUTBOX, Uploads, hydrate, snapshot
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


def delivered(prepared: Prepared, result: ExperimentResult, store: ArtifactStore,
              uploads: Uploads) -> ExperimentResult:
    """The result once its artifacts are in the store (or named as missing there): the best model
    and its predictions, the arguments, the training record and the ledger. Rows carry the store's
    URLs, so a report on any host finds them."""
    out = prepared.output_dir
    uploads.send(*(out / name for name in (BEST_DIR, "training_args.json", "trained.json", "attempts.json",
                                            "tensorboard")))  # the last only with report_to = "tensorboard"
    missing = uploads.close(prepared.spec.upload_wait_seconds)

    def url(path: str | None) -> str | None:
        try:
            return store.url_of(Path(path)) if path and "://" not in path else path
        except ValueError:  # recorded on another host (a reused or hydrated result): already a store URL
            return path
    return dataclasses.replace(result, checkpoint_url=result.checkpoint_url or url(result.checkpoint_path),
                               predictions_path=url(result.predictions_path),
                               validation_predictions_path=url(result.validation_predictions_path),
                               artifacts_missing=missing or None)


def write_result(prepared: Prepared, result: ExperimentResult, store: ArtifactStore) -> ExperimentResult:
    """result.json beside the checkpoint and in the store, last: it is how a retry anywhere knows
    the work is done. If the store refuses it, it waits in the outbox and the row says so."""
    path = prepared.output_dir / RESULT_FILE
    write_json(path, result.to_dict())
    try:
        store.put_file(path)
    except StoreError as error:
        print(f"could not send {RESULT_FILE} to the artifact store ({error}); it waits in {OUTBOX}")
        result = dataclasses.replace(result, artifacts_missing=[*(result.artifacts_missing or []), RESULT_FILE])
        write_json(path, result.to_dict())
        snapshot(path, prepared.output_dir / OUTBOX / RESULT_FILE)
    return result


def complete(prepared: Prepared, time_limit_seconds: float | None, started_at: datetime,
             instruments: Instruments | None = None, lock=None) -> ExperimentResult:
    """The result of a prepared experiment, holding its locks: already finished, finished again from
    the best model an earlier attempt trained, reused, or trained now. On a host with nothing local,
    what attempts elsewhere left comes from the artifact store first."""
    store = ArtifactStore.of(prepared.spec.runtime())
    try:
        hydrate(store, prepared.output_dir)
    except StoreError as error:  # as with the database: the run goes on, saying what it could not do
        print(f"could not look in the artifact store for what earlier attempts left ({error}); going on with what "
              "this host has")
    uploads = Uploads(store, prepared.output_dir)
    earlier = finished_result(prepared.output_dir)
    if earlier is not None:
        # A retry after the result was written but not recorded (say the database was down):
        # the work is done, only the recording (and any upload left over) is left.
        print(f"experiment already finished; its result is {prepared.output_dir / RESULT_FILE}")
        missing = uploads.close(prepared.spec.upload_wait_seconds)
        return dataclasses.replace(earlier, artifacts_missing=missing or None)
    trained = read_trained(prepared.output_dir)
    if trained is not None:
        print(f"training finished in an earlier attempt ({trained.stop_reason.value} at step {trained.steps_run}): "
              "finishing from its best model, without training again")
        # (trained.json may come from another host: the best model is the one in this folder now)
        result = dataclasses.replace(refinish(prepared, trained), checkpoint_path=str(prepared.output_dir / BEST_DIR))
    else:
        result = reuse_earlier_result(prepared) or finish(
            train(prepared, time_limit_seconds, started_at, instruments or Instruments(), uploads, lock))
    if lock is not None:
        lock.check()  # lost while finishing: the new holder writes the result
    result = write_result(prepared, delivered(prepared, result, store, uploads), store)
    close_ledger(prepared.output_dir, result.stop_reason.value)
    return result


def run_experiment(spec: ExperimentSpec, time_limit_seconds: float | None = None,
                   instruments: Instruments | None = None) -> ExperimentResult:
    """Train and evaluate one experiment and return its result; a run that raises returns a failed
    result naming the error (invalid data: its own stop reason). Raises ExperimentRunning when
    another process holds the experiment, or took it over while the results DB was away."""
    started_at = datetime.now(UTC)
    try:
        prepared = prepare(spec)
    except DataError as error:  # the data breaks the contract: no retry can change that
        print(f"invalid data: {error}")
        return failed_result(spec, None, error, started_at, StopReason.INVALID_DATA)
    except Exception as error:
        traceback.print_exc()
        return failed_result(spec, None, error, started_at)
    with experiment_lock(prepared.output_dir), cross_host_lock(spec.database_url, prepared.key) as holding:
        try:
            return complete(prepared, time_limit_seconds, started_at, instruments, holding)
        except (TrainingInterrupted, ExperimentRunning):
            raise  # not finished, not failed: the retry resumes from the full save, or another run owns it
        except Exception as error:  # recorded as a failed experiment; the task then fails
            traceback.print_exc()
            full = disk_full(error, prepared.output_dir)
            if full is not None:
                print(f"error: {full}")
            return failed_result(spec, prepared, full or error, started_at)
