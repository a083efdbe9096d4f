"""The finish phase: the stop reason, validation and test metrics of the best checkpoint, what
production needs to know about it (F1 interval, speed, size), and the typed result."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path

from training.engine.accounting import peak_memory_bytes
from training.engine.callbacks import learning_curve
from training.engine.checkpoints import checkpoints
from training.engine.serving import inference_speed, model_size
from training.engine.tokenization import LENGTH_COLUMN
from training.engine.trainer import Training
from training.results.predictions import write_predictions
from training.results.record import ExperimentResult, StopReason
from training.results.statistics import bootstrap_f1_interval

METRIC_NAMES = ("f1", "precision", "recall", "accuracy")


def stop_reason(training: Training, stopped_early: bool) -> StopReason:
    watchers = training.watchers
    if training.trainer is None:
        return training.stop_reason  # out of memory at every batch size
    if watchers.nan_stop.triggered_at_step is not None:
        return StopReason.NAN_LOSS
    if watchers.pruning is not None and watchers.pruning.pruned is not None:
        return StopReason.PRUNED
    if watchers.time_budget.triggered:
        return StopReason.TIMEOUT
    return StopReason.EARLY_STOPPED if stopped_early else training.stop_reason


def evaluate_best(training: Training) -> tuple[dict, dict, Path | None]:
    """Validation and test metrics of the best checkpoint (already loaded by the Trainer)."""
    trainer, prepared = training.trainer, training.prepared
    if trainer.state.best_model_checkpoint is None and training.watchers.nan_stop.triggered_at_step is not None:
        return {}, {}, None  # diverged before any evaluation: nothing trustworthy to keep
    validation = trainer.evaluate(metric_key_prefix="eval")
    # Test rows in file order, not length-grouped: the predictions file lines up with the test file
    # (and with every other experiment on the same data), and the interval can be recomputed from it.
    grouping, trainer.args.train_sampling_strategy = trainer.args.train_sampling_strategy, "sequential"
    try:
        prediction = trainer.predict(training.tokenized["test"], metric_key_prefix="test")
    finally:
        trainer.args.train_sampling_strategy = grouping
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    low, high = bootstrap_f1_interval(prediction.label_ids, logits.argmax(-1), len(prepared.label_values),
                                      prepared.spec.seed)
    best_dir = prepared.output_dir / "best"
    trainer.save_model(str(best_dir))
    predictions = write_predictions(best_dir, prepared.row_ids["test"], prediction.label_ids, logits,
                                    prepared.label_values, prepared.spec.seed)
    training.serving = {"test_f1_ci_low": low, "test_f1_ci_high": high, "predictions_path": str(predictions),
                        **inference_speed(trainer.model, training.tokenized["test"], trainer.data_collator),
                        **model_size(trainer.model, best_dir)}
    return validation, prediction.metrics, best_dir


def finish(training: Training) -> ExperimentResult:
    trainer = training.trainer
    # Read before evaluate_best: its evaluation of the best checkpoint is one more evaluation
    # without a gain to the early-stopping callback, which would turn a run that merely
    # reached its last step into an "early_stopped" one.
    stopped_early = (trainer is not None and training.watchers.early_stopping.early_stopping_patience_counter
                     >= training.prepared.spec.early_stopping_patience)
    curve = learning_curve(training.state) if training.state else []  # before evaluate_best logs its own
    validation, test, best_dir = ({}, {}, None) if trainer is None else evaluate_best(training)
    reason = stop_reason(training, stopped_early)
    for checkpoint in checkpoints(training.prepared.output_dir):
        shutil.rmtree(checkpoint)  # afterwards only the best is kept
    training.ledger.finish(reason.value)
    return result(training, reason, validation, test, best_dir, curve)


def result(training: Training, reason: StopReason, validation: dict, test: dict, best_dir: Path | None,
           points: list[dict]) -> ExperimentResult:
    state, train_seconds, ledger = training.state, training.train_seconds, training.ledger
    best_checkpoint = state.best_model_checkpoint if state else None
    if best_checkpoint:
        best_step = int(best_checkpoint.rsplit("-", 1)[1])
    else:  # no evaluation happened before the end: the final model is the only candidate
        best_step = state.global_step if best_dir else None
    best_point = next((p for p in points if p["step"] == best_step), None)
    steps_run = state.global_step if state else 0
    samples = steps_run * training.per_device_batch * training.accumulation
    planned = state.max_steps * training.per_device_batch * training.accumulation if state and state.max_steps else None
    pruned = training.watchers.pruning.pruned if training.watchers and training.watchers.pruning else None
    timer = training.watchers.compile_timer if training.watchers else None  # set only when compiled
    tokens = sum(training.tokenized["train"][LENGTH_COLUMN]) * (state.epoch or 0) if state else 0
    return dataclasses.replace(
        training.prepared.identity,
        model_revision=training.model_revision, per_device_batch_size=training.per_device_batch,
        activation_checkpointing=training.checkpointing,
        compiled=timer is not None, compile_seconds=timer.seconds if timer else None,
        effective_accumulation_steps=training.accumulation, device=training.device,
        gpu_count=training.gpu_count, precision=training.precision,
        attention_implementation=training.attention, max_length=training.max_length,
        **{f"validation_{n}": validation.get(f"eval_{n}") for n in METRIC_NAMES},
        **{f"test_{n}": test.get(f"test_{n}") for n in METRIC_NAMES},
        best_step=best_step, steps_planned=state.max_steps if state else None, steps_run=steps_run,
        samples_planned=planned, samples_seen=samples if state else None,
        pruned_at_fraction=pruned.fraction if pruned else None, pruned_at_samples=pruned.samples if pruned else None,
        pruning_f1=pruned.f1 if pruned else None, pruning_threshold_f1=pruned.threshold_f1 if pruned else None,
        pruning_peers=pruned.peers if pruned else None,
        stop_reason=reason, attempt_count=len(ledger.attempts), attempts=ledger.attempts,
        resumed_from_step=ledger.current["resumed_from_step"], wall_seconds=round(ledger.total_seconds, 3),
        gpu_hours=ledger.total_gpu_seconds / 3600,
        time_to_best_seconds=best_point["elapsed_seconds"] if best_point else None,
        peak_memory_bytes=peak_memory_bytes(training.gpu_count > 0),
        mean_gpu_utilization_percent=training.mean_utilisation,
        samples_per_second=samples / train_seconds if train_seconds else None,
        tokens_per_second=tokens / train_seconds if train_seconds else None,
        most_checkpoints_on_disk=training.watchers.checkpoints.most_on_disk if training.watchers else 0,
        checkpoint_bytes_written=sum(a.get("checkpoint_bytes", 0) for a in ledger.attempts),
        full_checkpoints_saved=sum(a.get("full_saves", 0) for a in ledger.attempts),
        model_checkpoints_saved=sum(a.get("model_saves", 0) for a in ledger.attempts),
        checkpoint_path=str(best_dir) if best_dir else None, eval_points=points, **training.serving,
        started_at=training.started_at.isoformat(), finished_at=datetime.now(timezone.utc).isoformat())
