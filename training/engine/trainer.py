"""The training phase: tokenize (cached), build the Trainer with the plan's settings and the
watching callbacks, and train, halving the per-device batch on CUDA out-of-memory and resuming
from the last full save (training/engine/checkpoints.py)."""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from training.engine.accounting import AttemptLedger, UtilisationSampler, model_fingerprint
from training.engine.arguments import (
    COMPILE_PAD_MULTIPLE,
    choose_precision,
    compiles,
    tensorboard_folder,
    training_arguments,
)
from training.engine.callbacks import (
    CompileTimer,
    EvaluationRecorder,
    Heartbeat,
    LiveResults,
    LockWatch,
    NonFiniteLossStop,
    TimeBudget,
)
from training.engine.checkpoints import CheckpointPolicy, StopRequest, checkpoint_step, last_full_checkpoint
from training.engine.metrics import metrics_for_trainer
from training.engine.models import load_tokenizer_and_model
from training.engine.prepare import Prepared
from training.engine.pruning import SuccessiveHalving
from training.engine.tokenization import tokenized_splits
from training.engine.uploads import Uploads
from training.results.record import StopReason

MAX_OOM_HALVINGS = 4  # batch 32 -> 2 at most; past that the model does not fit this device


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM after saving its full state (engine/checkpoints.py): the
    experiment is neither finished nor failed, and its retry resumes from that save."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"stopped on SIGTERM at step {step}; the full state is saved: a retry resumes from it")


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped order, drawn from (data seed, epoch) alone. The Trainer's own
    sampler draws it from the global RNG when the epoch's iterator is made, which a resume in the
    middle of an epoch does before it restores the checkpoint's RNG state: it then skipped the
    batches of another order and trained the rest of the epoch on other rows (a SIGTERM resume
    ended at F1 0.784 against 0.759). With the order a function of the epoch, a resume reproduces
    the uninterrupted run."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:  # accelerate's data loader calls it at every epoch
        self.generator.manual_seed(self.seed + epoch)


class SweepTrainer(Trainer):
    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, self.args.data_seed)
        return sampler


@dataclass(frozen=True)
class Instruments:
    """What a caller adds to a run besides its spec, as the Trainer takes extra callbacks: more
    Trainer callbacks, and the clock the full-save interval reads (default: time.monotonic). The
    product passes none; the tests inject faults through them (tests/training/faults.py)."""

    callbacks: tuple = ()
    clock: Callable[[object], float] | None = None  # of the TrainerState: seconds


@dataclass
class Watchers:
    """The callbacks whose findings the finish phase reads; new for every Trainer built."""

    early_stopping: EarlyStoppingCallback
    recorder: EvaluationRecorder
    nan_stop: NonFiniteLossStop
    time_budget: TimeBudget
    checkpoints: CheckpointPolicy
    pruning: SuccessiveHalving | None = None  # only with pruning on
    compile_timer: CompileTimer | None = None  # only when compiled

    def callbacks(self) -> list:
        return [watcher for watcher in vars(self).values() if watcher is not None]


@dataclass
class Training:
    """The training phase's outcome: everything the finish phase needs."""

    prepared: Prepared
    started_at: datetime
    started: float  # time.monotonic() when this attempt began: the time budget and the curve count from it
    device: str
    precision: str
    gpu_count: int
    max_length: int
    tokenized: object
    ledger: AttemptLedger
    per_device_batch: int
    accumulation: int
    checkpointing: bool = False  # activation checkpointing as it is now ("auto" turns it on after an OOM)
    stop_reason: StopReason = StopReason.COMPLETED
    trainer: Trainer | None = None
    watchers: Watchers | None = None
    state: object = None  # the TrainerState at the end (also after an OOM)
    train_seconds: float | None = None
    model_revision: str | None = None
    attention: str | None = None
    mean_utilisation: float | None = None
    stop: StopRequest = field(default_factory=StopRequest)  # SIGTERM during training: save the full state, stop
    instruments: Instruments = field(default_factory=Instruments)
    uploads: Uploads | None = None  # sends each save to the artifact store (engine/uploads.py)
    lock: object = None  # the cross-host lock's holding (engine/locks.py): checked at every step


def train(prepared: Prepared, time_limit_seconds: float | None, started_at: datetime,
          instruments: Instruments = Instruments(), uploads: Uploads | None = None, lock=None) -> Training:
    spec = prepared.spec
    set_seed(spec.seed)
    device, precision, gpu_count = choose_precision(spec.mixed_precision)
    tokenizer, _ = load_tokenizer_and_model(prepared.identity.model_source, prepared.label_values, load_model=False)
    tokenized, max_length = tokenize(prepared, tokenizer)
    hp = spec.hyperparameters
    training = Training(prepared, started_at, time.monotonic(), device, precision, gpu_count, max_length, tokenized,
                        AttemptLedger(prepared.output_dir, gpu_count), hp.batch_size, hp.gradient_accumulation_steps,
                        checkpointing=spec.gradient_checkpointing is True, instruments=instruments,
                        uploads=uploads, lock=lock)
    # The tighter of the task's limit (from its execution_timeout) and the budget's time cap.
    limit = min(filter(None, (time_limit_seconds, spec.max_train_seconds)), default=None)
    with UtilisationSampler() as sampler, training.stop:
        training.stop_reason = train_with_oom_backoff(training, tokenizer, limit)
    training.mean_utilisation = sampler.mean_percent
    return training


def tokenize(prepared: Prepared, tokenizer) -> tuple[object, int]:
    """(the tokenized splits, cached per dataset and rows, and the length they were cut to)."""
    spec = prepared.spec
    # The plan's length, but never past what the model can embed (CodeBERT: 512 positions).
    max_length = min(spec.max_length, tokenizer.model_max_length)
    caps = {"train": spec.max_train_samples, "eval": spec.max_eval_samples, "test": spec.max_test_samples,
            "seed": spec.row_seed, "row_sample": "file-order"}
    return tokenized_splits(prepared.splits, tokenizer, prepared.dataset_spec, prepared.label_values, max_length,
                            prepared.fingerprint, caps, spec.runtime().tokenized_dir()), max_length


def build_trainer(training: Training, tokenizer, time_limit_seconds: float | None) -> Trainer:
    prepared, spec = training.prepared, training.prepared.spec
    _, model = load_tokenizer_and_model(prepared.identity.model_source, prepared.label_values)
    training.model_revision = model_fingerprint(prepared.identity.model_source, model.config)
    training.attention = model.config._attn_implementation
    training.watchers = Watchers(
        EarlyStoppingCallback(spec.early_stopping_patience, spec.early_stopping_min_delta),
        EvaluationRecorder(training.started, training.ledger.total_seconds - training.ledger.current["seconds"]),
        NonFiniteLossStop(), TimeBudget(training.started, time_limit_seconds),
        CheckpointPolicy(prepared.output_dir, spec.full_checkpoint_minutes * 60, training.ledger, training.stop,
                         training.instruments.clock, training.uploads),
        SuccessiveHalving(spec, len(training.tokenized["train"]), prepared.key, len(training.tokenized["validation"]))
        if spec.pruning else None,
        CompileTimer() if compiles(spec, training.gpu_count > 0) else None)
    args = training_arguments(spec, prepared.output_dir, training.precision, training.gpu_count > 0,
                              training.per_device_batch, training.accumulation, training.checkpointing,
                              train_rows=len(training.tokenized["train"]))
    if spec.report_to == "tensorboard":  # read by the Trainer's TensorBoardCallback (transformers 5)
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_folder(spec, prepared.output_dir))
    live = LiveResults(spec.database_url, prepared.identity, len(training.ledger.attempts))
    return SweepTrainer(
        model=model, args=args, train_dataset=training.tokenized["train"],
        eval_dataset=training.tokenized["validation"], processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=COMPILE_PAD_MULTIPLE if args.torch_compile else None),
        compute_metrics=metrics_for_trainer(len(prepared.label_values)),
        callbacks=[*training.watchers.callbacks(), Heartbeat(training.ledger), live,
                   *([LockWatch(training.lock)] if training.lock is not None else []), *training.instruments.callbacks])


def train_with_oom_backoff(training: Training, tokenizer, time_limit_seconds: float | None) -> StopReason:
    """Train; on CUDA OOM halve the per-device batch and double accumulation (same effective
    batch) and resume, up to MAX_OOM_HALVINGS times. With gradient_checkpointing = "auto", the
    first OOM turns activation checkpointing on at the same batch instead; only a second one halves."""
    halvings = 0
    while True:
        training.trainer = build_trainer(training, tokenizer, time_limit_seconds)
        write_effective_arguments(training)
        last = last_full_checkpoint(training.prepared.output_dir)
        if last and training.ledger.current["resumed_from_step"] is None:
            training.ledger.current["resumed_from_step"] = checkpoint_step(Path(last))
            print(f"resuming from {last}")
        try:
            output = training.trainer.train(resume_from_checkpoint=last)
            training.train_seconds, training.state = output.metrics["train_runtime"], training.trainer.state
            if training.watchers.checkpoints.interrupted:
                training.ledger.finish("interrupted")
                raise TrainingInterrupted(training.state.global_step)
            return StopReason.COMPLETED
        except torch.cuda.OutOfMemoryError as error:
            print(f"out of memory at per-device batch {training.per_device_batch}: {error}")
            training.state = training.trainer.state
        # Freed outside the except block: while it runs, the traceback still holds the failed
        # step's frames and with them its activations, so emptying the cache there frees little.
        training.trainer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()  # the peak reported is that of the batch size that ran
        if training.prepared.spec.gradient_checkpointing == "auto" and not training.checkpointing:
            training.checkpointing = True
            print(f"turning activation checkpointing on (gradient_checkpointing = \"auto\"), same per-device batch "
                  f"{training.per_device_batch}")
            continue
        if training.per_device_batch == 1 or halvings == MAX_OOM_HALVINGS:
            break
        halvings += 1
        training.per_device_batch //= 2
        training.accumulation *= 2
        print(f"retrying with per-device batch {training.per_device_batch}, accumulation {training.accumulation}")
    return StopReason.OOM


def write_effective_arguments(training: Training) -> None:
    """The arguments the Trainer really ran with, for audits and for the fidelity tests."""
    args, spec = training.trainer.args, training.prepared.spec
    early_stopping = training.watchers.early_stopping
    effective = {**json.loads(args.to_json_string()),
                 "early_stopping_patience": early_stopping.early_stopping_patience,
                 "early_stopping_threshold": early_stopping.early_stopping_threshold,
                 # The Trainer turns pinning off on CPU (there is no device to copy to).
                 "pin_memory_requested": spec.pin_memory,
                 "attention_implementation": training.attention, "max_length": training.max_length,
                 "train_sampling_strategy": args.train_sampling_strategy}
    path = training.prepared.output_dir / "training_args.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(effective, indent=2, default=str))
