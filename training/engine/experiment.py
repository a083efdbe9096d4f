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
import hashlib
import json
import os
import socket
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from training.data import loading
from training.data.contract import DataError, leakage_counts
from training.data.loading import LoadedDataset
from training.engine.accounting import code_version
from training.engine.models import resolve_model_source, stand_in_info
from training.engine.recovery import RESULT_FILE, DiskFull, close_ledger, disk_full, finished_result
from training.plan import DatasetSpec
from training.results.files import write_json
from training.results.record import ExperimentResult, StopReason
from training.spec import ExperimentSpec

if TYPE_CHECKING:
    from training.engine.trainer import Instruments

UNKNOWN_FINGERPRINT = "unavailable"  # the key of a run whose data could not be read


@dataclass(frozen=True)
class Prepared:
    """What is known before any model loads."""

    spec: ExperimentSpec
    key: str
    output_dir: Path
    dataset: LoadedDataset  # checked against the contract, before any cap
    splits: object  # the capped raw splits (a datasets.DatasetDict), rows in file order
    row_ids: dict[str, list[int]]  # each capped split's rows as positions in its file
    identity: ExperimentResult

    @property
    def dataset_spec(self) -> DatasetSpec:
        return self.dataset.spec

    @property
    def fingerprint(self) -> str:
        return self.dataset.fingerprint

    @property
    def label_values(self) -> list:
        return self.dataset.labels.values


def experiment_key(spec: ExperimentSpec, dataset_fingerprint: str) -> str:
    """Stable across retries and reruns: model, hyperparameters, data and settings, no run ids."""
    material = json.dumps({"spec": spec.settings_for_key(), "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def identity(spec: ExperimentSpec, key: str, dataset: LoadedDataset | None) -> ExperimentResult:
    """What names an experiment and what it trains: the part of its result known before training
    (without a dataset when the data is what failed)."""
    import torch
    import transformers

    source = resolve_model_source(spec.model_id, spec.runtime().model_root)
    labels = dataset.labels if dataset else None
    return ExperimentResult(
        dag_id=spec.dag_id, run_id=spec.run_id, run_type=spec.run_type, experiment_key=key, tier=spec.tier,
        model_id=spec.model_id, model_source=source, is_stand_in=stand_in_info(source) is not None,
        **spec.hyperparameters.as_dict(), budget=spec.budget, seed=spec.seed, confirmation_of=spec.confirmation_of,
        max_steps=spec.max_steps,
        dataset_source=spec.dataset.source,
        dataset_fingerprint=dataset.fingerprint if dataset else None,
        positive_label=None if labels is None or labels.positive is None else str(labels.positive),
        class_count=len(labels.values) if labels else None, plan_version=spec.plan_version,
        code_version=code_version(), versions={"torch": torch.__version__, "transformers": transformers.__version__})


def cached_leakage_counts(spec: ExperimentSpec, dataset: LoadedDataset, splits, caps: dict) -> dict[str, int]:
    """The leakage counts of these rows, computed once per dataset and row selection: every
    experiment of a sweep (and every retry) asks the same question of the same rows, and on the full
    data hashing every text takes longer than a small model's training step."""
    material = json.dumps({"data": dataset.fingerprint, "caps": caps, "seed": spec.seed}, sort_keys=True)
    path = spec.runtime().leakage_dir() / f"{hashlib.sha256(material.encode()).hexdigest()[:20]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    counts = leakage_counts(splits, dataset.spec.text_columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(counts))
    staging.replace(path)  # whole or absent, whichever experiment writes it first
    return counts


def prepare(spec: ExperimentSpec) -> Prepared:
    """Load and check the data (a DataError names every problem), and place the experiment."""
    from datasets import DatasetDict

    dataset = loading.load_dataset(spec.dataset)
    caps = {"train": spec.max_train_samples, "validation": spec.max_eval_samples,
            "test": spec.max_test_samples}  # test: every row unless a budget names max_test_samples
    row_ids = {split: loading.capped_rows(len(dataset.splits[split]), cap, spec.seed) for split, cap in caps.items()}
    # A copy: capping must not change the checked splits.
    splits = DatasetDict({split: dataset.splits[split] if len(ids) == len(dataset.splits[split])
                          else dataset.splits[split].select(ids) for split, ids in row_ids.items()})
    key = experiment_key(spec, dataset.fingerprint)
    facts = {f"{split}_rows": len(splits[split]) for split in caps}
    facts.update(cached_leakage_counts(spec, dataset, splits, caps))
    return Prepared(spec, key, spec.runtime().experiment_dir(spec.dag_id, spec.run_id, key), dataset, splits,
                    row_ids, dataclasses.replace(identity(spec, key, dataset), **facts))


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
    ledger_path = output_dir / "attempts.json"
    try:
        attempts = json.loads(ledger_path.read_text()) if ledger_path.is_file() else []
    except (OSError, ValueError):
        attempts = []  # an unreadable ledger must not hide the failure being recorded
    if attempts and attempts[-1]["outcome"] is None:
        attempts[-1]["outcome"] = reason.value
        try:
            write_json(ledger_path, attempts)
        except OSError as write_error:  # a full disk: the record of the failure still goes out
            print(f"could not update {ledger_path}: {write_error}")
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


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM after saving its full state (engine/checkpoints.py): the
    experiment is neither finished nor failed, and its retry resumes from that save."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"stopped on SIGTERM at step {step}; the full state is saved: a retry resumes from it")


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
    from training.engine.finish import finish, read_trained, refinish
    from training.engine.trainer import train

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
            train(prepared, time_limit_seconds, started_at, *([instruments] if instruments else [])))
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
