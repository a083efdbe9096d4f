"""One training run, start to finish, in three phases: prepare (data, key, folder), train (the
Hugging Face Trainer with the plan's settings, OOM back-off, resume), and finish (the best
checkpoint by validation F1, test F1 with it, accounting). The result is an ExperimentResult,
also written as result.json beside the checkpoint.

Runs in its own process (python -m training run-experiment) so that a GPU's memory is freed and
a hung run can be killed; it never imports Airflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from training.data import loading
from training.engine.accounting import code_version
from training.engine.models import resolve_model_source, stand_in_info
from training.plan import DatasetSpec
from training.results.record import ExperimentResult, StopReason
from training.spec import ExperimentSpec

UNKNOWN_FINGERPRINT = "unavailable"  # the key of a run whose data could not be read


@dataclass(frozen=True)
class Prepared:
    """What is known before any model loads."""

    spec: ExperimentSpec
    key: str
    output_dir: Path
    dataset_spec: DatasetSpec
    splits: object  # the capped raw splits (a datasets.DatasetDict)
    fingerprint: str
    label_values: list
    identity: ExperimentResult


def experiment_key(spec: ExperimentSpec, dataset_fingerprint: str) -> str:
    """Stable across retries and reruns: model, hyperparameters, data and settings, no run ids."""
    material = json.dumps({"spec": spec.settings_for_key(), "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def identity(spec: ExperimentSpec, key: str, dataset_source: str, fingerprint: str | None) -> ExperimentResult:
    """What names an experiment and what it trains: the part of its result known before training."""
    import torch
    import transformers

    source = resolve_model_source(spec.model_id, spec.runtime().model_root)
    return ExperimentResult(
        dag_id=spec.dag_id, run_id=spec.run_id, run_type=spec.run_type, experiment_key=key, tier=spec.tier,
        model_id=spec.model_id, model_source=source, is_stand_in=stand_in_info(source) is not None,
        **spec.hyperparameters.as_dict(), budget=spec.budget, dataset_source=dataset_source,
        dataset_fingerprint=fingerprint, plan_version=spec.plan_version, code_version=code_version(),
        versions={"torch": torch.__version__, "transformers": transformers.__version__})


def prepare(spec: ExperimentSpec) -> Prepared:
    dataset_spec = loading.resolve_spec(spec.dataset)
    splits, fingerprint = loading.load_splits(dataset_spec)
    splits["train"] = loading.cap(splits["train"], spec.max_train_samples, spec.seed)
    for split in ("validation", "test"):
        splits[split] = loading.cap(splits[split], spec.max_eval_samples, spec.seed)
    key = experiment_key(spec, fingerprint)
    return Prepared(spec, key, spec.runtime().experiment_dir(spec.dag_id, spec.run_id, key), dataset_spec, splits,
                    fingerprint, loading.label_names(splits, dataset_spec),
                    identity(spec, key, dataset_spec.source, fingerprint))


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
    now = datetime.now(timezone.utc).isoformat()
    copied = ExperimentResult.from_dict(earlier.to_dict())
    return dataclasses.replace(
        copied, dag_id=spec.dag_id, run_id=spec.run_id, run_type=spec.run_type, reused_from_run_id=earlier.run_id,
        attempt_count=1, wall_seconds=0.0, gpu_hours=0.0, started_at=now, finished_at=now,
        attempts=[{"attempt": 1, "seconds": 0.0, "gpu_count": 0, "outcome": "reused"}])


def failed_result(spec: ExperimentSpec, prepared: Prepared | None, error: BaseException,
                  started_at: datetime) -> ExperimentResult:
    """The result of a run that raised: enough to show the failure in the results and the report,
    with the time of every attempt so far (the ledger survives in the experiment folder)."""
    if prepared is not None:
        base, output_dir = prepared.identity, prepared.output_dir
    else:  # the data itself is what failed: no fingerprint, so the key says so
        key = experiment_key(spec, UNKNOWN_FINGERPRINT)
        base = identity(spec, key, spec.dataset.source, None)
        output_dir = spec.runtime().experiment_dir(spec.dag_id, spec.run_id, key)
    ledger_path = output_dir / "attempts.json"
    attempts = json.loads(ledger_path.read_text()) if ledger_path.is_file() else []
    if attempts and attempts[-1]["outcome"] is None:
        attempts[-1]["outcome"] = StopReason.FAILED.value
        ledger_path.write_text(json.dumps(attempts, indent=2))
    finished_at = datetime.now(timezone.utc)
    return dataclasses.replace(
        base, stop_reason=StopReason.FAILED, attempt_count=max(len(attempts), 1), attempts=attempts,
        wall_seconds=sum(a["seconds"] for a in attempts) or (finished_at - started_at).total_seconds(),
        gpu_count=max((a["gpu_count"] for a in attempts), default=0),
        gpu_hours=sum(a["seconds"] * a["gpu_count"] for a in attempts) / 3600,
        started_at=started_at.isoformat(), finished_at=finished_at.isoformat(),
        error=f"{type(error).__name__}: {error}")


def run_experiment(spec: ExperimentSpec, time_limit_seconds: float | None = None) -> ExperimentResult:
    """Train and evaluate one experiment and return its result; a run that raises returns a failed
    result naming the error. A usable result is also written as result.json beside the checkpoint,
    which is how a retry knows the work is done."""
    from training.engine.finish import finish
    from training.engine.trainer import train

    started_at = datetime.now(timezone.utc)
    prepared = None
    try:
        prepared = prepare(spec)
        finished = prepared.output_dir / "result.json"
        if finished.is_file():
            # A retry after the result was written but not recorded (say the database was down):
            # the work is done, only the recording is left.
            print(f"experiment already finished; its result is {finished}")
            return ExperimentResult.from_dict(json.loads(finished.read_text()))
        result = reuse_earlier_result(prepared)
        if result is None:
            result = finish(train(prepared, time_limit_seconds, started_at))
    except Exception as error:  # recorded as a failed experiment; the task then fails
        traceback.print_exc()
        return failed_result(spec, prepared, error, started_at)
    prepared.output_dir.mkdir(parents=True, exist_ok=True)  # a reused result trained nothing here yet
    (prepared.output_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result
