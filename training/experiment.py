"""One training run, start to finish: data, tokenizer and model, the Hugging Face Trainer with
the plan's settings, best checkpoint by validation F1, test F1 with that checkpoint, accounting.

Runs in its own process (python -m training run-experiment) so that a GPU's memory is freed and
a hung run can be killed; it never imports Airflow.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, set_seed

from training import data as data_module
from training.accounting import (AttemptLedger, UtilisationSampler, code_version, model_fingerprint,
                                 peak_memory_bytes)
from training.arguments import choose_precision, training_arguments
from training.callbacks import (CheckpointCounter, EvaluationRecorder, Heartbeat, LiveResults,
                                NonFiniteLossStop, SimulatedMemoryLimit, TimeBudget)
from training.metrics import metrics_for_trainer
from training.models import load_tokenizer_and_model, resolve_model_source, stand_in_info
from training.paths import experiments_root, safe_name
from training.results import COLUMNS, find_succeeded
from training.serving import bootstrap_f1_interval, inference_speed, model_size
from training.spec import ExperimentSpec
from training.tokenization import LENGTH_COLUMN, tokenized_splits

MAX_OOM_HALVINGS = 4  # batch 32 -> 2 at most; past that the model does not fit this device
METRIC_NAMES = ("f1", "precision", "recall", "accuracy")


def experiment_key(spec: ExperimentSpec, dataset_fingerprint: str) -> str:
    """Stable across retries and reruns: model, hyperparameters, data and settings, no run ids."""
    material = json.dumps({"spec": spec.settings_for_key(), "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def experiment_dir(spec: ExperimentSpec, key: str) -> Path:
    return experiments_root() / safe_name(spec.dag_id or "cli") / safe_name(spec.run_id or "adhoc") / key


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint that was saved whole. The Trainer writes trainer_state.json last, so a
    folder without it is what a kill during a save left behind; it is removed, not resumed from."""
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for checkpoint in checkpoints:
        if (checkpoint / "trainer_state.json").is_file():
            return str(checkpoint)
        print(f"removing {checkpoint}: incomplete (the previous attempt was stopped while saving it)")
        shutil.rmtree(checkpoint)
    return None


def prepare_data(spec: ExperimentSpec):
    """(dataset spec, capped raw splits, fingerprint, label values)."""
    dataset_spec = data_module.resolve_spec(spec.dataset)
    splits, fingerprint = data_module.load_splits(dataset_spec)
    splits["train"] = data_module.cap(splits["train"], spec.max_train_samples, spec.seed)
    for split in ("validation", "test"):
        splits[split] = data_module.cap(splits[split], spec.max_eval_samples, spec.seed)
    return dataset_spec, splits, fingerprint, data_module.label_names(splits, dataset_spec)


def identity_record(spec: ExperimentSpec, key: str, source: str, dataset_source: str,
                    fingerprint: str | None) -> dict:
    """What names an experiment and what it trains: the part of its record known before training."""
    return {
        "dag_id": spec.dag_id, "run_id": spec.run_id, "run_type": spec.run_type, "experiment_key": key,
        "tier": spec.tier, "model_id": spec.model_id, "model_source": source,
        "is_stand_in": stand_in_info(source) is not None, **spec.hyperparameters.as_dict(), "budget": spec.budget,
        "dataset_source": dataset_source, "dataset_fingerprint": fingerprint, "plan_version": spec.plan_version,
        "code_version": code_version(), "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


class Run:
    """The state of one experiment while it trains; `execute` returns its result record."""

    def __init__(self, spec: ExperimentSpec, time_limit_seconds: float | None = None):
        # The tighter of the task's limit (from its execution_timeout) and the budget's time cap.
        self.spec = spec
        self.time_limit_seconds = min(filter(None, (time_limit_seconds, spec.max_train_seconds)), default=None)
        self.started_at, self.started = datetime.now(timezone.utc), time.monotonic()
        self.trainer, self.state, self.train_seconds, self.serving = None, None, None, {}

    def execute(self) -> dict:
        spec = self.spec
        set_seed(spec.seed)
        self.dataset_spec, splits, self.fingerprint, self.label_values = prepare_data(spec)
        self.key = experiment_key(spec, self.fingerprint)
        self.output_dir = experiment_dir(spec, self.key)
        finished = self.output_dir / "result.json"
        if finished.is_file():
            # A retry after the result was written but not recorded (say the database was down):
            # the work is done, only the recording is left.
            print(f"experiment already finished; its result is {finished}")
            return json.loads(finished.read_text())
        reused = self.reuse_earlier_result()
        if reused is not None:
            return reused
        self.device, self.precision, self.gpu_count = choose_precision(spec.mixed_precision)
        self.ledger = AttemptLedger(self.output_dir, self.gpu_count)
        self.source = resolve_model_source(spec.model_id)
        self.identity = identity_record(spec, self.key, self.source, self.dataset_spec.source, self.fingerprint)
        tokenizer, _ = load_tokenizer_and_model(self.source, len(self.label_values), load_model=False)
        # The plan's length, but never past what the model can embed (CodeBERT: 512 positions).
        self.max_length = min(spec.max_length, tokenizer.model_max_length)
        caps = {"train": spec.max_train_samples, "eval": spec.max_eval_samples, "seed": spec.seed}
        self.tokenized = tokenized_splits(splits, tokenizer, self.dataset_spec, self.label_values,
                                          self.max_length, self.fingerprint, caps)
        self.tokenizer = tokenizer
        with UtilisationSampler() as sampler:
            stop_reason = self.train_with_oom_backoff()
        return self.finish(stop_reason, sampler.mean_percent)

    def reuse_earlier_result(self) -> dict | None:
        """With reuse on, an earlier run's success with the same experiment key (same model,
        hyperparameters, data and settings) is copied into this run instead of trained again."""
        url = os.environ.get("SWEEP_DATABASE_URL")
        if not (self.spec.reuse_results and url):
            return None
        earlier = find_succeeded(url, self.key, self.spec.dag_id, self.spec.run_id)
        if earlier is None:
            return None
        print(f"reusing the result of experiment {self.key} from run {earlier['run_id']}: nothing to train")
        now = datetime.now(timezone.utc).isoformat()
        record = {**{c: earlier[c] for c in COLUMNS if c in earlier}, "eval_points": earlier["eval_points"],
                  "dag_id": self.spec.dag_id, "run_id": self.spec.run_id, "run_type": self.spec.run_type,
                  "reused_from_run_id": earlier["run_id"], "attempt_count": 1, "wall_seconds": 0.0, "gpu_hours": 0.0,
                  "started_at": now, "finished_at": now,
                  "attempts": [{"attempt": 1, "seconds": 0.0, "gpu_count": 0, "outcome": "reused"}]}
        return json.loads(json.dumps(record, default=str))  # timestamps as text, as in every result file

    def build_trainer(self, per_device_batch: int, accumulation: int) -> Trainer:
        _, model = load_tokenizer_and_model(self.source, len(self.label_values))
        self.model_revision = model_fingerprint(self.source, model.config)
        self.attention = model.config._attn_implementation
        self.early_stopping = EarlyStoppingCallback(self.spec.early_stopping_patience,
                                                    self.spec.early_stopping_min_delta)
        self.recorder = EvaluationRecorder(self.started)
        self.nan_stop, self.time_budget = NonFiniteLossStop(), TimeBudget(self.started, self.time_limit_seconds)
        self.checkpoints = CheckpointCounter(self.output_dir)
        args = training_arguments(self.spec, self.output_dir, self.precision, self.gpu_count > 0,
                                  per_device_batch, accumulation)
        return Trainer(
            model=model, args=args, train_dataset=self.tokenized["train"],
            eval_dataset=self.tokenized["validation"], processing_class=self.tokenizer,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            compute_metrics=metrics_for_trainer(len(self.label_values)),
            callbacks=[self.early_stopping, self.recorder, self.nan_stop, self.time_budget, self.checkpoints,
                       Heartbeat(self.ledger), SimulatedMemoryLimit(),
                       LiveResults({**self.identity, "attempt_count": len(self.ledger.attempts)})])

    def train_with_oom_backoff(self) -> str:
        """Train; on CUDA OOM halve the per-device batch and double accumulation (same effective
        batch) and resume, up to MAX_OOM_HALVINGS times. Returns the stop reason so far."""
        hp = self.spec.hyperparameters
        self.per_device_batch, self.accumulation = hp.batch_size, hp.gradient_accumulation_steps
        for halvings in range(MAX_OOM_HALVINGS + 1):
            self.trainer = self.build_trainer(self.per_device_batch, self.accumulation)
            self.write_effective_arguments()
            last = last_complete_checkpoint(self.output_dir)
            if last and self.ledger.current["resumed_from_step"] is None:
                self.ledger.current["resumed_from_step"] = int(last.rsplit("-", 1)[1])
                print(f"resuming from {last}")
            try:
                self.train_seconds = self.trainer.train(resume_from_checkpoint=last).metrics["train_runtime"]
                self.state = self.trainer.state
                return "completed"
            except torch.cuda.OutOfMemoryError as error:
                print(f"out of memory at per-device batch {self.per_device_batch}: {error}")
                self.state = self.trainer.state
            # Freed outside the except block: while it runs, the traceback still holds the failed
            # step's frames and with them its activations, so emptying the cache there frees little.
            self.trainer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()  # the peak reported is that of the batch size that ran
            if self.per_device_batch == 1 or halvings == MAX_OOM_HALVINGS:
                return "oom"
            self.per_device_batch //= 2
            self.accumulation *= 2
            print(f"retrying with per-device batch {self.per_device_batch}, accumulation {self.accumulation}")
        return "oom"

    def write_effective_arguments(self) -> None:
        """The arguments the Trainer really ran with, for audits and for the fidelity tests."""
        args = self.trainer.args
        effective = {**json.loads(args.to_json_string()),
                     "early_stopping_patience": self.early_stopping.early_stopping_patience,
                     "early_stopping_threshold": self.early_stopping.early_stopping_threshold,
                     # The Trainer turns pinning off on CPU (there is no device to copy to).
                     "pin_memory_requested": self.spec.pin_memory,
                     "attention_implementation": self.attention, "max_length": self.max_length,
                     "train_sampling_strategy": args.train_sampling_strategy}
        (self.output_dir / "training_args.json").write_text(json.dumps(effective, indent=2, default=str))

    def evaluate_best(self) -> tuple[dict, dict, Path | None]:
        """Validation and test metrics of the best checkpoint (already loaded by the Trainer), and
        what production needs to know about it: F1 interval, speed, size."""
        trainer = self.trainer
        if trainer.state.best_model_checkpoint is None and self.nan_stop.triggered_at_step is not None:
            return {}, {}, None  # diverged before any evaluation: nothing trustworthy to keep
        validation = trainer.evaluate(metric_key_prefix="eval")
        prediction = trainer.predict(self.tokenized["test"], metric_key_prefix="test")
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        low, high = bootstrap_f1_interval(prediction.label_ids, logits.argmax(-1), len(self.label_values),
                                          self.spec.seed)
        best_dir = self.output_dir / "best"
        trainer.save_model(str(best_dir))
        self.serving = {"test_f1_ci_low": low, "test_f1_ci_high": high,
                        **inference_speed(trainer.model, self.tokenized["test"], trainer.data_collator),
                        **model_size(trainer.model, best_dir)}
        return validation, prediction.metrics, best_dir

    def finish(self, stop_reason: str, mean_utilisation: float | None) -> dict:
        trainer = self.trainer
        # Read before evaluate_best: its evaluation of the best checkpoint is one more evaluation
        # without a gain to the early-stopping callback, which would turn a run that merely
        # reached its last step into an "early_stopped" one.
        stopped_early = (trainer is not None and
                         self.early_stopping.early_stopping_patience_counter >= self.spec.early_stopping_patience)
        validation, test, best_dir = ({}, {}, None) if trainer is None else self.evaluate_best()
        if trainer is not None:
            if self.nan_stop.triggered_at_step is not None:
                stop_reason = "nan_loss"
            elif self.time_budget.triggered:
                stop_reason = "timeout"
            elif stopped_early:
                stop_reason = "early_stopped"
        for checkpoint in self.output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)  # afterwards only the best is kept
        self.ledger.finish(stop_reason)
        return self.record(stop_reason, validation, test, best_dir, mean_utilisation)

    def record(self, stop_reason, validation, test, best_dir, mean_utilisation) -> dict:
        state, train_seconds = self.state, self.train_seconds
        best_checkpoint = state.best_model_checkpoint if state else None
        if best_checkpoint:
            best_step = int(best_checkpoint.rsplit("-", 1)[1])
        else:  # no evaluation happened before the end: the final model is the only candidate
            best_step = state.global_step if best_dir else None
        best_point = next((p for p in self.recorder.points if p["step"] == best_step), None)
        steps_run = state.global_step if state else 0
        samples = steps_run * self.per_device_batch * self.accumulation
        tokens = sum(self.tokenized["train"][LENGTH_COLUMN]) * (state.epoch or 0) if state else 0
        return {
            **self.identity,
            "model_revision": self.model_revision,
            "per_device_batch_size": self.per_device_batch, "effective_accumulation_steps": self.accumulation,
            "device": self.device, "gpu_count": self.gpu_count, "precision": self.precision,
            "attention_implementation": self.attention, "max_length": self.max_length,
            **{f"validation_{n}": validation.get(f"eval_{n}") for n in METRIC_NAMES},
            **{f"test_{n}": test.get(f"test_{n}") for n in METRIC_NAMES},
            "best_step": best_step, "steps_planned": state.max_steps if state else None, "steps_run": steps_run,
            "stop_reason": stop_reason, "attempt_count": len(self.ledger.attempts),
            "attempts": self.ledger.attempts, "resumed_from_step": self.ledger.current["resumed_from_step"],
            "wall_seconds": round(self.ledger.total_seconds, 3),
            "gpu_hours": self.ledger.total_gpu_seconds / 3600,
            "time_to_best_seconds": best_point["elapsed_seconds"] if best_point else None,
            "peak_memory_bytes": peak_memory_bytes(self.gpu_count > 0),
            "mean_gpu_utilization_percent": mean_utilisation,
            "samples_per_second": samples / train_seconds if train_seconds else None,
            "tokens_per_second": tokens / train_seconds if train_seconds else None,
            "most_checkpoints_on_disk": self.checkpoints.most_on_disk,
            "checkpoint_path": str(best_dir) if best_dir else None,
            "eval_points": self.recorder.points, **self.serving,
            "started_at": self.started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
            "error": None,
        }


def run_experiment(spec: ExperimentSpec, time_limit_seconds: float | None = None) -> dict:
    """Train and evaluate one experiment; return its result record (also written as result.json)."""
    run = Run(spec, time_limit_seconds)
    result = run.execute()
    run.output_dir.mkdir(parents=True, exist_ok=True)  # a reused result trained nothing here yet
    (run.output_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def failed_result(spec: ExperimentSpec, error: BaseException, started_at: datetime) -> dict:
    """The record of a run that raised: enough to show the failure in the results and the report,
    with the time of every attempt so far (the ledger survives in the experiment folder)."""
    try:
        fingerprint = data_module.load_splits(data_module.resolve_spec(spec.dataset))[1]
    except Exception:  # the data itself may be what failed
        fingerprint = None
    key = experiment_key(spec, fingerprint or "unavailable")
    ledger_path = experiment_dir(spec, key) / "attempts.json"
    attempts = json.loads(ledger_path.read_text()) if ledger_path.is_file() else []
    if attempts and attempts[-1]["outcome"] is None:
        attempts[-1]["outcome"] = "failed"
        ledger_path.write_text(json.dumps(attempts, indent=2))
    source = resolve_model_source(spec.model_id)
    finished_at = datetime.now(timezone.utc)
    return {
        **identity_record(spec, key, source, spec.dataset.source, fingerprint), "stop_reason": "failed",
        "attempt_count": max(len(attempts), 1), "attempts": attempts or None,
        "wall_seconds": sum(a["seconds"] for a in attempts) or (finished_at - started_at).total_seconds(),
        "gpu_count": max((a["gpu_count"] for a in attempts), default=0),
        "gpu_hours": sum(a["seconds"] * a["gpu_count"] for a in attempts) / 3600, "eval_points": [],
        "started_at": started_at.isoformat(), "finished_at": finished_at.isoformat(),
        "error": f"{type(error).__name__}: {error}",
    }
