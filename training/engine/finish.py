"""The finish phase: the stop reason, validation and test metrics of the best checkpoint, what
production needs to know about it (F1 interval, speed, size), and the typed result; and the
re-finish of an experiment whose training an earlier attempt completed."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer

from training.engine.accounting import AttemptLedger, peak_memory_bytes
from training.engine.arguments import COMPILE_PAD_MULTIPLE, capped_steps, choose_precision, training_arguments
from training.engine.callbacks import learning_curve
from training.engine.checkpoints import checkpoints
from training.engine.metrics import metrics_for_trainer
from training.engine.models import load_tokenizer_and_model
from training.engine.prepare import Prepared
from training.engine.recovery import readable_record
from training.engine.serving import inference_speed, model_size
from training.engine.tokenization import LENGTH_COLUMN
from training.engine.trainer import Training, tokenize
from training.results.files import write_json
from training.results.predictions import FILE_NAME as PREDICTIONS_FILE_NAME
from training.results.predictions import VALIDATION_FILE_NAME, write_predictions
from training.results.record import ExperimentResult, StopReason
from training.results.statistics import bootstrap_f1_interval

METRIC_NAMES = ("f1", "precision", "recall", "accuracy")
BEST_DIR = "best"  # the model to ship, with its tokenizer and test predictions
TRAINED_FILE = "trained.json"  # what training found, written before evaluation (see refinish)


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


def save_best(training: Training) -> Path | None:
    """The best checkpoint (already loaded by the Trainer) as best/, or None when there is none."""
    trainer = training.trainer
    if trainer is None:
        return None  # out of memory at every batch size
    if trainer.state.best_model_checkpoint is None and training.watchers.nan_stop.triggered_at_step is not None:
        return None  # diverged before any evaluation: nothing trustworthy to keep
    best_dir = training.prepared.output_dir / BEST_DIR
    trainer.save_model(str(best_dir))
    return best_dir


def predict_in_file_order(trainer: Trainer, dataset, prefix: str):
    """The model's predictions on a split, rows in file order, not length-grouped: the predictions
    file lines up with the split's file (and with every other experiment on the same data), and the
    interval can be recomputed from it. predict(), unlike evaluate(), calls no evaluation callbacks
    (early stopping would count one more evaluation without a gain)."""
    grouping, trainer.args.train_sampling_strategy = trainer.args.train_sampling_strategy, "sequential"
    try:
        return trainer.predict(dataset, metric_key_prefix=prefix)
    finally:
        trainer.args.train_sampling_strategy = grouping


def scored(trainer: Trainer, tokenized, prepared: Prepared, best_dir: Path, split: str, prefix: str,
           file_name: str) -> dict:
    """One split's metrics, F1 interval and predictions file, as result fields."""
    prediction = predict_in_file_order(trainer, tokenized[split], prefix)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    low, high = bootstrap_f1_interval(prediction.label_ids, logits.argmax(-1), len(prepared.label_values),
                                      prepared.spec.seed)
    path = write_predictions(best_dir, prepared.row_ids[split], prediction.label_ids, logits,
                             prepared.label_values, prepared.spec.seed, file_name)
    paths = {"validation": "validation_predictions_path", "test": "predictions_path"}
    return {**{f"{split}_{n}": prediction.metrics.get(f"{prefix}_{n}") for n in METRIC_NAMES},
            f"{split}_f1_ci_low": low, f"{split}_f1_ci_high": high, paths[split]: str(path)}


def evaluate(trainer: Trainer, tokenized, prepared: Prepared, best_dir: Path) -> dict:
    """The best model's validation and test metrics, intervals and predictions, speed and size: the
    result fields that evaluation fills in. Validation's predictions are kept too: they say whether
    the choice between two configurations was beyond validation noise (report/noise.py)."""
    return {**scored(trainer, tokenized, prepared, best_dir, "validation", "eval", VALIDATION_FILE_NAME),
            **scored(trainer, tokenized, prepared, best_dir, "test", "test", PREDICTIONS_FILE_NAME),
            **inference_speed(trainer.model, tokenized["test"], trainer.data_collator),
            **model_size(trainer.model, best_dir)}


def finish(training: Training) -> ExperimentResult:
    """The result of a training: what training found is written to trained.json beside best/
    before evaluation starts, so a failure from there on (evaluation, a full disk, the result file)
    costs a retry the evaluation only (refinish), never the training."""
    trainer = training.trainer
    # Read before the evaluation: evaluating the best checkpoint is one more evaluation without a
    # gain to the early-stopping callback, which would turn a run that merely reached its last step
    # into an "early_stopped" one.
    stopped_early = (trainer is not None and training.watchers.early_stopping.early_stopping_patience_counter
                     >= training.prepared.spec.early_stopping_patience)
    curve = learning_curve(training.state) if training.state else []  # before evaluation logs its own
    reason = stop_reason(training, stopped_early)
    best_dir = save_best(training)
    trained = result(training, reason, best_dir, curve)
    if best_dir is not None:
        write_json(training.prepared.output_dir / TRAINED_FILE, trained.to_dict())
    for checkpoint in checkpoints(training.prepared.output_dir):
        shutil.rmtree(checkpoint)  # afterwards only the best is kept
    if best_dir is None:
        return accounted(trained, training.ledger)
    evaluation = evaluate(trainer, training.tokenized, training.prepared, best_dir)
    return accounted(dataclasses.replace(trained, **evaluation), training.ledger)


def refinish(prepared: Prepared, trained: ExperimentResult) -> ExperimentResult:
    """Finish an experiment whose training an earlier attempt completed (its trained.json and best/
    are on disk) but whose evaluation or result file failed: evaluate best/ again, in seconds,
    as a new attempt in the ledger. The metrics are those the first finish would have recorded."""
    best_dir = prepared.output_dir / BEST_DIR
    _, precision, gpu_count = choose_precision(prepared.spec.mixed_precision)
    ledger = AttemptLedger(prepared.output_dir, gpu_count)
    tokenizer, model = load_tokenizer_and_model(str(best_dir), prepared.label_values)
    tokenized, _ = tokenize(prepared, tokenizer)
    args = training_arguments(prepared.spec, prepared.output_dir, precision, gpu_count > 0,
                              trained.per_device_batch_size or trained.batch_size,
                              trained.effective_accumulation_steps or trained.gradient_accumulation_steps,
                              bool(trained.activation_checkpointing))
    trainer = Trainer(model=model, args=args, eval_dataset=tokenized["validation"], processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(
                          tokenizer, pad_to_multiple_of=COMPILE_PAD_MULTIPLE if args.torch_compile else None),
                      compute_metrics=metrics_for_trainer(len(prepared.label_values)))
    evaluation = evaluate(trainer, tokenized, prepared, best_dir)
    return accounted(dataclasses.replace(trained, **evaluation), ledger)


def accounted(result: ExperimentResult, ledger: AttemptLedger) -> ExperimentResult:
    """The result with the time of every attempt, this one up to now (its evaluation included)."""
    ledger.beat()
    attempts = closed_attempts(ledger, result.stop_reason)
    return dataclasses.replace(result, attempts=attempts, attempt_count=len(attempts),
                               wall_seconds=round(ledger.total_seconds, 3), gpu_hours=ledger.total_gpu_seconds / 3600,
                               finished_at=datetime.now(UTC).isoformat())


def closed_attempts(ledger: AttemptLedger, reason: StopReason) -> list[dict]:
    """The ledger as the result records it: this attempt with its outcome. The file keeps outcome
    None until the result file is written (close_ledger), so an attempt that fails before then is
    marked failed, not with the outcome it did not reach."""
    return [*ledger.attempts[:-1], {**ledger.current, "outcome": reason.value}]


def read_trained(output_dir: Path) -> ExperimentResult | None:
    """What an earlier attempt's training found, if it finished training and saved best/; an
    unreadable trained.json is set aside (the experiment is then trained again)."""
    if not (output_dir / BEST_DIR / "config.json").is_file():
        return None
    return readable_record(output_dir / TRAINED_FILE, "the experiment is trained again")


def result(training: Training, reason: StopReason, best_dir: Path | None, points: list[dict]) -> ExperimentResult:
    """Everything training found; the evaluation's fields and the attempts' time stay empty
    (finish and refinish add them, accounted() the time)."""
    state, train_seconds, ledger = training.state, training.train_seconds, training.ledger
    spec = training.prepared.spec
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
        best_step=best_step, steps_planned=state.max_steps if state else None, steps_run=steps_run,
        steps_planned_by="epochs" if capped_steps(
            spec, len(training.tokenized["train"]), training.per_device_batch, training.accumulation) is None
        else "max_steps",
        samples_planned=planned, samples_seen=samples if state else None,
        pruned_at_fraction=pruned.fraction if pruned else None, pruned_at_samples=pruned.samples if pruned else None,
        pruning_f1=pruned.f1 if pruned else None, pruning_threshold_f1=pruned.threshold_f1 if pruned else None,
        pruning_peers=pruned.peers if pruned else None,
        stop_reason=reason, resumed_from_step=ledger.current["resumed_from_step"],
        time_to_best_seconds=best_point["elapsed_seconds"] if best_point else None,
        peak_memory_bytes=peak_memory_bytes(training.gpu_count > 0),
        mean_gpu_utilization_percent=training.mean_utilisation,
        samples_per_second=samples / train_seconds if train_seconds else None,
        tokens_per_second=tokens / train_seconds if train_seconds else None,
        most_checkpoints_on_disk=training.watchers.checkpoints.most_on_disk if training.watchers else 0,
        checkpoint_bytes_written=sum(a.get("checkpoint_bytes", 0) for a in ledger.attempts),
        full_checkpoints_saved=sum(a.get("full_saves", 0) for a in ledger.attempts),
        model_checkpoints_saved=sum(a.get("model_saves", 0) for a in ledger.attempts),
        checkpoint_path=str(best_dir) if best_dir else None, eval_points=points,
        started_at=training.started_at.isoformat())
