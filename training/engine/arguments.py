"""The Trainer's arguments, derived from an experiment spec and the device: the one place where
the plan's settings become Hugging Face settings."""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from transformers import TrainingArguments

from training.plan import planned_steps
from training.spec import ExperimentSpec

# Compiled runs pad each batch to a multiple of this many tokens, so length-grouped batches give at
# most max_length / 64 shapes per batch size (8 at 512) instead of one per distinct length.
COMPILE_PAD_MULTIPLE = 64


def compiles(spec: ExperimentSpec, on_gpu: bool) -> bool:
    return spec.compile is True or (spec.compile == "auto" and on_gpu)


def choose_precision(mixed_precision: bool) -> tuple[str, str, int]:
    """(device name, precision, GPUs held): bf16 where the GPU has it, else fp16; fp32 on CPU."""
    if not torch.cuda.is_available():
        return f"cpu ({platform.processor() or platform.machine()})", "fp32", 0
    precision = "fp32"
    if mixed_precision:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return torch.cuda.get_device_name(0), precision, torch.cuda.device_count()


def capped_steps(spec: ExperimentSpec, train_rows: int, per_device_batch: int, accumulation: int) -> int | None:
    """The step cap if it shortens the run, else None: a cap never lengthens training past the
    grid's epochs (the Trainer's own max_steps would replace them)."""
    epochs_steps = planned_steps(train_rows, per_device_batch, accumulation, spec.hyperparameters.num_epochs, None)
    return spec.max_steps if spec.max_steps and spec.max_steps < epochs_steps else None


def training_arguments(spec: ExperimentSpec, output_dir: Path, precision: str, on_gpu: bool,
                       per_device_batch: int, accumulation: int, checkpointing: bool | None = None,
                       train_rows: int | None = None) -> TrainingArguments:
    """per_device_batch x accumulation is always the plan's batch x accumulation; the split
    between them changes only when OOM back-off halves the per-device batch. checkpointing: whether
    activation checkpointing is on now (None: the plan's value, with "auto" starting off).
    train_rows: with it (a run), the step cap only ever shortens the grid's epochs; without it
    (the benchmarks' fixed step counts), max_steps is taken as it is."""
    if checkpointing is None:
        checkpointing = spec.gradient_checkpointing is True
    max_steps = spec.max_steps if train_rows is None else capped_steps(spec, train_rows, per_device_batch, accumulation)
    hp = spec.hyperparameters
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=hp.learning_rate * (spec.learning_rate_scale or 1.0),
        weight_decay=hp.weight_decay,
        num_train_epochs=hp.num_epochs,
        max_steps=max_steps or -1,
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        gradient_accumulation_steps=accumulation,
        activation_checkpointing=checkpointing,  # transformers 5's name for it
        torch_compile=compiles(spec, on_gpu),
        eval_strategy="steps",
        eval_steps=spec.eval_steps,
        save_strategy="steps",
        save_steps=spec.eval_steps,  # every evaluation can become the best checkpoint
        save_total_limit=None,  # CheckpointPolicy keeps the best, the newest full save and the best it names
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        logging_steps=spec.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach NonFiniteLossStop, not be averaged away
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=spec.pin_memory,
        train_sampling_strategy="group_by_length",  # less padding; the order stays seeded
        length_column_name="length",
        use_cpu=not on_gpu,
        seed=spec.seed,
        data_seed=spec.seed,
        report_to=spec.report_to,  # "none" or "tensorboard" (its folder: tensorboard_folder)
        run_name=run_name(spec),
        disable_tqdm=True,
        # CheckpointPolicy sets it per save: model only for a new best, the optimizer, scheduler and
        # RNG state too at a bounded interval (full_checkpoint_minutes) and on SIGTERM.
        save_only_model=False,
    )


def run_name(spec: ExperimentSpec) -> str:
    """The experiment as a person finds it in TensorBoard: the run and the grid point."""
    hp = spec.hyperparameters
    return (f"{spec.dag_id or 'cli'}/{spec.run_id or 'adhoc'}/{spec.model_id} lr={hp.learning_rate:g} "
            f"bs={hp.batch_size} ep={hp.num_epochs} wd={hp.weight_decay:g} seed={spec.seed}")


def tensorboard_folder(spec: ExperimentSpec, output_dir: Path) -> Path:
    """Where the experiment's event files go: beside its checkpoints (uploaded with its artifacts),
    in a folder named for the run name, so `tensorboard --logdir` over a run's experiments shows
    each grid point by name."""
    from training.settings import safe_name

    return output_dir / "tensorboard" / safe_name(run_name(spec).split("/", 2)[-1])
