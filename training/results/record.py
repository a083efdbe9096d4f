"""What one experiment produced, defined once: the stop reasons, and the typed result record that
the training subprocess writes as result.json, the store upserts as a row of `experiments`, and
the report reads back. The table's columns and its stop-reason check follow from these types, and
a test fails if the migrations drift from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    COMPLETED = "completed"  # reached its last planned step
    EARLY_STOPPED = "early_stopped"  # validation F1 stopped improving
    PRUNED = "pruned"  # behind its peers at a successive-halving rung; its best checkpoint is kept and tested
    TIMEOUT = "timeout"  # the time budget ran out; the best checkpoint so far is kept
    OOM = "oom"  # out of GPU memory even at the smallest per-device batch
    NAN_LOSS = "nan_loss"  # the training loss became NaN or infinite
    FAILED = "failed"  # raised: the error is in the record
    INVALID_DATA = "invalid_data"  # the dataset breaks the contract; the error names each problem

    @property
    def succeeded(self) -> bool:
        """The run left a usable, evaluated model."""
        return self in SUCCEEDED

    @property
    def retryable(self) -> bool:
        """A retry could end differently (a lost machine, a full disk), unlike a deterministic outcome."""
        return self is StopReason.FAILED


SUCCEEDED = frozenset({StopReason.COMPLETED, StopReason.EARLY_STOPPED, StopReason.TIMEOUT, StopReason.PRUNED})
# The same sets as SQL parameters (`stop_reason = ANY(:succeeded)`).
SUCCEEDED_VALUES = sorted(reason.value for reason in SUCCEEDED)
FAILED_VALUES = sorted(reason.value for reason in StopReason if reason not in SUCCEEDED)

FILE_ONLY = {"column": False}  # in result.json, not a column of `experiments`


def _file_only(default_factory=None, default=None):
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=FILE_ONLY)
    return field(default=default, metadata=FILE_ONLY)


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    # Identity: which run, which grid point, which data; known before training starts.
    dag_id: str
    run_id: str
    run_type: str
    experiment_key: str
    tier: str
    model_id: str
    model_source: str
    is_stand_in: bool
    learning_rate: float
    batch_size: int
    num_epochs: int
    weight_decay: float
    gradient_accumulation_steps: int
    budget: str
    seed: int | None = None
    confirmation_of: str | None = None  # a seed-confirmation run: the experiment key of the grid run it repeats
    dataset_source: str
    dataset_fingerprint: str | None = None
    positive_label: str | None = None  # the class binary F1 is of; None with more classes (macro F1)
    class_count: int | None = None
    train_rows: int | None = None  # the rows each split really had in this run, after any budget cap
    validation_rows: int | None = None
    test_rows: int | None = None
    # Leakage: held-out rows that are exact duplicates of a training row (whitespace-normalised; a
    # pair in either order), and rows sharing at least one text with a training row.
    validation_duplicates_of_train: int | None = None
    test_duplicates_of_train: int | None = None
    validation_rows_sharing_train_text: int | None = None
    test_rows_sharing_train_text: int | None = None
    validation_rows_all_texts_in_train: int | None = None  # every text of the row is in training: near-copies
    test_rows_all_texts_in_train: int | None = None
    code_version: str | None = None
    versions: dict = field(default_factory=dict)
    plan_version: str | None = _file_only()
    # Outcome.
    stop_reason: StopReason | None = None  # None only while a row says the run is still going
    error: str | None = None
    validation_f1: float | None = None
    validation_precision: float | None = None
    validation_recall: float | None = None
    validation_accuracy: float | None = None
    test_f1: float | None = None
    test_precision: float | None = None
    test_recall: float | None = None
    test_accuracy: float | None = None
    test_f1_ci_low: float | None = None
    test_f1_ci_high: float | None = None
    validation_f1_ci_low: float | None = None  # where the choice is made: how much validation noise there is
    validation_f1_ci_high: float | None = None
    best_step: int | None = None
    steps_planned: int | None = None
    max_steps: int | None = None  # the run's step cap, if any: it only ever shortens the grid's epochs
    run_settings: dict | None = None  # spec.run_settings(): what the run's results depend on beyond the grid point
    steps_planned_by: str | None = None  # "epochs", or "max_steps" where the cap was the shorter
    steps_run: int | None = None
    samples_planned: int | None = None  # training samples the run planned (steps x batch x accumulation)
    samples_seen: int | None = None  # and those it trained on
    # Successive halving (with pruning on): the rung that stopped it, as a fraction of the largest
    # planned run of the grid, its best validation F1 there, the F1 it had to reach, and how many
    # peers had reached the rung.
    pruned_at_fraction: float | None = None
    pruned_at_samples: int | None = None
    pruning_f1: float | None = None
    pruning_threshold_f1: float | None = None
    pruning_peers: int | None = None
    checkpoint_path: str | None = None
    predictions_path: str | None = None  # the best checkpoint's per-row test predictions (Parquet), in the store
    validation_predictions_path: str | None = None  # and its per-row validation predictions
    checkpoint_url: str | None = None  # the best checkpoint in the artifact store (its local path with none set)
    artifacts_missing: list[str] | None = None  # what the store had not taken when the row was written
    reused_from_run_id: str | None = None
    # How it ran and what it cost.
    model_revision: str | None = None
    device: str | None = None
    gpu_count: int = 0
    precision: str | None = None
    attention_implementation: str | None = None
    max_length: int | None = None
    per_device_batch_size: int | None = None
    activation_checkpointing: bool | None = None  # whether it trained with activation checkpointing (at the end)
    compiled: bool | None = None  # trained through torch.compile
    compile_seconds: float | None = None  # the first step's excess over the median step (compiling)
    # What its saves wrote over every attempt: bytes, full saves (with the optimizer, scheduler and
    # RNG state) and model-only saves of a new best.
    checkpoint_bytes_written: int | None = None
    full_checkpoints_saved: int | None = None
    model_checkpoints_saved: int | None = None
    effective_accumulation_steps: int | None = None
    attempt_count: int = 1
    resumed_from_step: int | None = None
    wall_seconds: float | None = None
    gpu_hours: float = 0.0
    time_to_best_seconds: float | None = None
    peak_memory_bytes: int | None = None
    mean_gpu_utilization_percent: float | None = None
    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    latency_batch1_ms: float | None = None
    throughput_batch32_per_second: float | None = None
    parameter_count: int | None = None
    model_size_bytes: int | None = None
    started_at: Any = None  # ISO text in the file, timestamptz in the table
    finished_at: Any = None
    # Kept in the file; the store writes them to their own tables.
    attempts: list = _file_only(default_factory=list)
    eval_points: list = _file_only(default_factory=list)
    most_checkpoints_on_disk: int | None = _file_only()

    def __post_init__(self):
        if self.stop_reason is not None and not isinstance(self.stop_reason, StopReason):
            object.__setattr__(self, "stop_reason", StopReason(self.stop_reason))

    @property
    def succeeded(self) -> bool:
        return self.stop_reason in SUCCEEDED and self.validation_f1 is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stop reasons are strings)."""
        data = dataclasses.asdict(self)
        data["stop_reason"] = None if self.stop_reason is None else self.stop_reason.value
        return data

    def column_values(self) -> dict[str, Any]:
        data = self.to_dict()
        return {name: data[name] for name in COLUMNS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        """From a result file or a table row; keys that are not fields (a row's ids) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items()
                      if key in names and (value is not None or key in REQUIRED)})


COLUMNS = tuple(f.name for f in dataclasses.fields(ExperimentResult) if f.metadata.get("column", True))
REQUIRED = frozenset(f.name for f in dataclasses.fields(ExperimentResult)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
# Columns of `experiments` that the store, not the result, fills in.
STORE_COLUMNS = ("experiment_id", "sweep_run_id", "status", "recorded_at")


@dataclass(frozen=True, kw_only=True)
class StoredExperiment(ExperimentResult):
    """A result as a row of the store: what the report and the run checks read."""

    experiment_id: int
    status: str = "finished"  # 'running' while training, 'finished' once its result is recorded

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredExperiment:
        return cls.from_dict(dict(row))
