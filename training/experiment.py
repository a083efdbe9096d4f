"""One training run, start to finish: data, tokenizer and model, the Hugging Face Trainer with
the plan's settings, best checkpoint by validation F1, test F1 with that checkpoint, accounting.

Runs in its own process (python -m training run-experiment) so that a GPU's memory is freed and
a hung run can be killed; it never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback,
                          TrainingArguments, set_seed)
from transformers.trainer_utils import get_last_checkpoint

from training import data as data_module
from training.metrics import metrics_for_trainer
from training.models import load_tokenizer_and_model, resolve_model_source, stand_in_info
from training.paths import experiments_root, safe_name
from training.spec import ExperimentSpec


def experiment_key(spec: ExperimentSpec, dataset_fingerprint: str) -> str:
    """Stable across retries and reruns: model, hyperparameters, data and settings, no run ids."""
    material = json.dumps({"spec": spec.settings_for_key(), "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def experiment_dir(spec: ExperimentSpec, key: str) -> Path:
    return experiments_root() / safe_name(spec.dag_id or "cli") / safe_name(spec.run_id or "adhoc") / key


def tokenize(splits, tokenizer, dataset_spec, label_values: list, max_length: int):
    """Tokenize without padding (the collator pads per batch); pairs share the length budget."""
    label_index = {value: index for index, value in enumerate(label_values)}
    columns = dataset_spec.text_columns

    def encode(batch):
        texts = [batch[column] for column in columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        encoded["labels"] = [label_index[value] for value in batch[dataset_spec.label_column]]
        return encoded

    return splits.map(encode, batched=True, remove_columns=splits["train"].column_names)


def choose_precision(mixed_precision: bool) -> tuple[str, str, int]:
    """(device name, precision, GPUs held): bf16 where the GPU has it, else fp16; fp32 on CPU."""
    import platform

    if not torch.cuda.is_available():
        return f"cpu ({platform.processor() or platform.machine()})", "fp32", 0
    precision = "fp32"
    if mixed_precision:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return torch.cuda.get_device_name(0), precision, torch.cuda.device_count()


def training_arguments(spec: ExperimentSpec, output_dir: Path, precision: str, on_gpu: bool, max_steps: int):
    hp = spec.hyperparameters
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=hp.learning_rate,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        num_train_epochs=hp.num_epochs,
        max_steps=max_steps,
        weight_decay=hp.weight_decay,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        activation_checkpointing=spec.gradient_checkpointing,  # transformers 5's name for it
        eval_strategy="steps",
        eval_steps=spec.eval_steps,
        save_strategy="steps",
        save_steps=spec.eval_steps,  # every evaluation can become the best checkpoint
        save_total_limit=1,  # with load_best_model_at_end: the best and the last survive
        logging_steps=spec.logging_steps,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=spec.pin_memory and on_gpu,  # pinning only helps host-to-GPU copies
        use_cpu=not on_gpu,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to="none",
        disable_tqdm=True,
    )


class EvaluationRecorder(TrainerCallback):
    """Keeps each periodic evaluation (the learning curve) with its wall-clock time."""

    def __init__(self, started: float):
        self.started = started
        self.points = []
        self.training = True  # the evaluations after training re-measure; they are not curve points

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.training and metrics and "eval_f1" in metrics:
            self.points.append({"step": state.global_step, "epoch": state.epoch,
                                "loss": metrics.get("eval_loss"), "f1": metrics.get("eval_f1"),
                                "elapsed_seconds": round(time.monotonic() - self.started, 3)})


def prefixed(metrics: dict, prefix: str) -> dict:
    return {f"{prefix}_{name}": metrics.get(f"{prefix}_{name}")
            for name in ("f1", "precision", "recall", "accuracy")}


def run_experiment(spec: ExperimentSpec) -> dict:
    """Train and evaluate one experiment; return its result record (also written as result.json)."""
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    set_seed(spec.seed)
    dataset_spec = data_module.resolve_spec(spec.dataset)
    splits, fingerprint = data_module.load_splits(dataset_spec)
    splits["train"] = data_module.cap(splits["train"], spec.max_train_samples, spec.seed)
    for split in ("validation", "test"):
        splits[split] = data_module.cap(splits[split], spec.max_eval_samples, spec.seed)
    label_values = data_module.label_names(splits, dataset_spec)
    key = experiment_key(spec, fingerprint)
    output_dir = experiment_dir(spec, key)

    source = resolve_model_source(spec.model_id)
    tokenizer, model = load_tokenizer_and_model(source, len(label_values))
    # The plan's length, but never past what the model can embed (CodeBERT: 512 positions).
    max_length = min(spec.max_length, tokenizer.model_max_length)
    tokenized = tokenize(splits, tokenizer, dataset_spec, label_values, max_length)

    device, precision, gpu_count = choose_precision(spec.mixed_precision)
    hp = spec.hyperparameters
    steps_per_epoch = math.ceil(len(tokenized["train"]) / (hp.batch_size * hp.gradient_accumulation_steps))
    steps_planned = steps_per_epoch * hp.num_epochs
    max_steps = min(steps_planned, spec.max_steps) if spec.max_steps else -1
    early_stopping = EarlyStoppingCallback(early_stopping_patience=spec.early_stopping_patience,
                                           early_stopping_threshold=spec.early_stopping_min_delta)
    recorder = EvaluationRecorder(started)
    trainer = Trainer(
        model=model,
        args=training_arguments(spec, output_dir, precision, gpu_count > 0, max_steps),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_for_trainer(len(label_values)),
        callbacks=[early_stopping, recorder],
    )
    last_checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=last_checkpoint)

    best_checkpoint = trainer.state.best_model_checkpoint
    best_step = int(best_checkpoint.rsplit("-", 1)[1]) if best_checkpoint else trainer.state.global_step
    validation = trainer.evaluate(metric_key_prefix="eval")
    test = trainer.evaluate(eval_dataset=tokenized["test"], metric_key_prefix="test")
    best_dir = output_dir / "best"
    trainer.save_model(str(best_dir))
    for checkpoint in output_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)

    stopped_early = early_stopping.early_stopping_patience_counter >= spec.early_stopping_patience
    wall_seconds = time.monotonic() - started
    best_point = next((p for p in recorder.points if p["step"] == best_step), None)
    stand_in = stand_in_info(source)
    result = {
        "experiment_key": key, "model_id": spec.model_id, "model_source": source,
        "is_stand_in": stand_in is not None, "tier": spec.tier, **hp.as_dict(),
        "dataset_source": dataset_spec.source, "dataset_fingerprint": fingerprint, "budget": spec.budget,
        "dag_id": spec.dag_id, "run_id": spec.run_id, "run_type": spec.run_type,
        "device": device, "gpu_count": gpu_count, "precision": precision, "max_length": max_length,
        **{name.replace("eval_", "validation_"): value for name, value in prefixed(validation, "eval").items()},
        **prefixed(test, "test"),
        "best_step": best_step, "steps_planned": steps_planned, "steps_run": trainer.state.global_step,
        "stop_reason": "early_stopped" if stopped_early else "completed",
        "wall_seconds": round(wall_seconds, 3), "gpu_hours": wall_seconds * gpu_count / 3600,
        "time_to_best_seconds": best_point["elapsed_seconds"] if best_point else None,
        "checkpoint_path": str(best_dir), "eval_points": recorder.points,
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "error": None,
    }
    (output_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def failed_result(spec: ExperimentSpec, error: BaseException, started_at: datetime) -> dict:
    """The record of a run that raised: enough to show the failure in the results and the report."""
    try:
        fingerprint = data_module.load_splits(data_module.resolve_spec(spec.dataset))[1]
    except Exception:  # the data itself may be what failed
        fingerprint = None
    key = experiment_key(spec, fingerprint or "unavailable")
    empty = dict.fromkeys(
        ["validation_f1", "validation_precision", "validation_recall", "validation_accuracy", "test_f1",
         "test_precision", "test_recall", "test_accuracy", "best_step", "steps_planned", "steps_run",
         "device", "precision", "time_to_best_seconds", "checkpoint_path"])
    source = resolve_model_source(spec.model_id)
    return {
        **empty, "experiment_key": key, "model_id": spec.model_id, "model_source": source,
        "is_stand_in": stand_in_info(source) is not None, "tier": spec.tier, **spec.hyperparameters.as_dict(),
        "dataset_source": spec.dataset.source, "dataset_fingerprint": fingerprint, "budget": spec.budget,
        "dag_id": spec.dag_id, "run_id": spec.run_id, "run_type": spec.run_type, "gpu_count": 0,
        "stop_reason": "failed", "wall_seconds": (datetime.now(timezone.utc) - started_at).total_seconds(),
        "gpu_hours": 0.0, "eval_points": [], "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "error": f"{type(error).__name__}: {error}",
    }
