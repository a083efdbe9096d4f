"""One experiment, fully resolved: the plan's settings after the budget, one grid point, one model.

The operator builds it, writes it as JSON, and the training subprocess reads it back; it is the
whole contract between Airflow and the training package.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.parameters import RunParameters
from training.plan import (
    LEGACY_PRUNING,
    DatasetSpec,
    Hyperparameters,
    ParamError,
    Plan,
    Pruning,
    Settings,
    Tier,
    closest,
)
from training.settings import Storage

PLAN_AS_WRITTEN = RunParameters()  # the full budget, the plan's dataset, seed and pruning, no step cap

# The experiment key (engine/prepare.py) hashes what changes the trained model: the fields below.
# Every field of the spec is in exactly one of the three lists (a test checks it), so a new field
# is a decision, not an accident. A field added to the key later goes in KEY_FIELDS_WHEN_SET with
# the value it had before it existed: left out at that value, keys recorded earlier stay valid.
# KEY_VERSION counts deliberate breaks: raise it (it enters the key above 1) to change every key.
KEY_VERSION = 1
KEY_FIELDS = ("model_id", "architecture", "tier", "hyperparameters", "gradient_checkpointing", "dataset",
              "eval_steps", "logging_steps", "early_stopping_patience", "early_stopping_min_delta",
              "mixed_precision", "pin_memory", "max_length", "max_train_samples", "max_eval_samples", "max_steps",
              "seed")
KEY_FIELDS_WHEN_SET = {"max_train_seconds": None, "max_test_samples": None, "learning_rate_scale": None,
                       "pruning": None, "compile": False}
# In the key only where a budget caps rows: it draws which rows (an uncapped run's key stays as it was).
KEY_FIELDS_WHEN_CAPPED = ("data_seed",)
# What differs between the experiments of one run: not part of what makes two runs comparable.
PER_EXPERIMENT = ("model_id", "architecture", "tier", "hyperparameters", "gradient_checkpointing")
# Why a run exists, where it writes, and how often it saves: never what it trains. (A seed
# confirmation is another experiment by its seed, not by confirmation_of.)
NOT_IN_KEY = ("budget", "dag_id", "run_id", "run_type", "plan_version", "reuse_results", "confirmation_of",
              "full_checkpoint_minutes", "upload_wait_seconds", "storage", "database_url", "report_to")


@dataclass(frozen=True)
class ExperimentSpec:
    model_id: str
    architecture: str
    tier: str
    hyperparameters: Hyperparameters
    gradient_checkpointing: bool | str  # True, False or "auto" (see training/engine/trainer.py)
    dataset: DatasetSpec
    budget: str
    # The plan's settings after the budget's overrides.
    eval_steps: int
    logging_steps: int
    early_stopping_patience: int
    early_stopping_min_delta: float
    mixed_precision: bool
    pin_memory: bool
    # How much data and how many steps.
    max_length: int
    max_train_samples: int | None
    max_eval_samples: int | None
    max_steps: int | None
    seed: int
    dag_id: str
    run_id: str
    run_type: str
    plan_version: str = ""
    reuse_results: bool = False  # copy an earlier run's result for the same experiment key
    max_train_seconds: int | None = None  # the budget's time cap (stop reason "timeout")
    max_test_samples: int | None = None  # None: every test row
    learning_rate_scale: float | None = None  # the budget's multiplier of the grid's learning rate
    confirmation_of: str | None = None  # a seed-confirmation run: the experiment key of the grid run it repeats
    # Successive halving across the model's grid (training/engine/pruning.py): reduction_factor,
    # min_fraction and the model's grid as [batch, accumulation, epochs] (the reference run is the
    # largest of them). None: off, as the plan is written.
    pruning: dict | None = None
    # The seed that draws a capped budget's rows (plan setting data_seed); None: the seed (specs
    # written before it existed).
    data_seed: int | None = None
    compile: bool | str = False  # torch.compile: True, False or "auto" (on CUDA); see engine/arguments.py
    # How often the full resumable state is saved (engine/checkpoints.py); not in the key: it
    # changes what a retry resumes from, never the model trained.
    full_checkpoint_minutes: float = Settings.full_checkpoint_minutes
    upload_wait_seconds: float = Settings.upload_wait_minutes * 60  # engine/uploads.py; not in the key
    report_to: str = Settings.report_to  # curves also to TensorBoard (engine/arguments.py); not in the key
    storage: Storage | None = None  # every location on disk (see training/settings.py)
    database_url: str | None = None  # the results DB; None: the result file only

    def settings_for_key(self) -> dict[str, Any]:
        """What changes the trained model, and so belongs in the experiment key (not run ids)."""
        data = {name: value for name, value in dataclasses.asdict(self).items()
                if name in KEY_FIELDS or name in KEY_FIELDS_WHEN_SET and value != KEY_FIELDS_WHEN_SET[name]}
        if any(data.get(cap) is not None for cap in ("max_train_samples", "max_eval_samples", "max_test_samples")):
            data["row_sample"] = "file-order"  # capped rows are sampled by loading.capped_rows
            if self.data_seed is not None:  # None: a spec from before, sampled with the seed
                data["data_seed"] = self.data_seed
        if KEY_VERSION > 1:
            data["key_version"] = KEY_VERSION
        return data

    @property
    def row_seed(self) -> int:
        """The seed of the capped budgets' row sample: the plan's data_seed, not the training seed."""
        return self.seed if self.data_seed is None else self.data_seed

    def run_settings(self) -> dict[str, Any]:
        """What this run's results depend on beyond the model and its grid point (the key's fields
        less model, tier and hyperparameters; pruning without the grid; and the budget's name):
        two runs equal on these, on the data fingerprint and on stand-in or real models compare
        like with like (the report's change since the previous run)."""
        data = {name: value for name, value in self.settings_for_key().items() if name not in PER_EXPERIMENT}
        data["pruning"] = {k: v for k, v in self.pruning.items() if k != "grid"} if self.pruning else None
        data["budget"] = self.budget
        return json.loads(json.dumps(data, default=str))  # as the database's jsonb gives it back

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        data = json.loads(text)
        data["hyperparameters"] = Hyperparameters(**data["hyperparameters"])
        dataset = data["dataset"]
        data["dataset"] = DatasetSpec(**{**dataset, "text_columns": tuple(dataset["text_columns"])})
        data["storage"] = Storage(**data["storage"]) if data.get("storage") else None
        return cls(**data)

    @classmethod
    def read(cls, path: Path) -> ExperimentSpec:
        return cls.from_json(Path(path).read_text())

    def write(self, path: Path) -> None:
        """Readable by its owner only: the database URL may carry a password."""
        path = Path(path)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(self.to_json())

    def runtime(self) -> Storage:
        """The storage locations; a spec without them was built outside a run and cannot train."""
        if self.storage is None:
            raise ValueError("this spec has no storage locations; build it with build_spec")
        return self.storage


def build_spec(plan: Plan, model_id: str, hyperparameters: Hyperparameters, run: RunParameters = PLAN_AS_WRITTEN,
               *, dag_id: str = "", run_id: str = "", run_type: str = "manual", confirmation_of: str | None = None,
               storage: Storage | None = None, database_url: str | None = None) -> ExperimentSpec:
    """Resolve the plan for one grid point under a run's parameters; a ParamError names a budget or
    model the plan lacks.

    Storage defaults to the environment's locations (this is where a run starts); the database URL
    is passed explicitly, so a spec built without one records its result in the file only.
    A seed-confirmation run is never pruned (it measures the chosen configuration whole)."""
    if model_id not in plan.architectures:
        raise ParamError("model", model_id, f"not a model of the plan; {closest(model_id, plan.architectures)}")
    budget = run.budget_of(plan)
    settings = plan.settings
    tier = plan.tier_of(model_id)
    dataset = dataclasses.replace(plan.dataset, source=run.dataset_source(plan))
    return ExperimentSpec(
        model_id=model_id,
        architecture=plan.architectures[model_id],
        tier=tier.name,
        hyperparameters=hyperparameters,
        gradient_checkpointing=tier.gradient_checkpointing,
        dataset=dataset,
        budget=run.budget,
        eval_steps=budget.eval_steps or settings.eval_steps,
        logging_steps=budget.logging_steps or settings.logging_steps,
        early_stopping_patience=settings.early_stopping_patience,
        early_stopping_min_delta=settings.early_stopping_min_delta,
        mixed_precision=settings.mixed_precision,
        pin_memory=settings.pin_memory,
        max_length=budget.max_length or settings.max_length,
        seed=settings.seed if run.seed is None else run.seed, data_seed=settings.data_seed,
        max_train_samples=budget.max_train_samples,
        max_eval_samples=budget.max_eval_samples,
        max_steps=run.step_cap(plan),
        dag_id=dag_id,
        run_id=run_id,
        run_type=run_type,
        plan_version=plan.version,
        reuse_results=run.reuse_results,
        max_train_seconds=budget.max_train_seconds,
        max_test_samples=budget.max_test_samples,
        learning_rate_scale=budget.learning_rate_scale,
        confirmation_of=confirmation_of,
        pruning=None if confirmation_of else pruning_settings(tier, run.pruning),
        compile=tier.compile,
        full_checkpoint_minutes=settings.full_checkpoint_minutes,
        upload_wait_seconds=settings.upload_wait_minutes * 60,
        report_to=settings.report_to,
        storage=storage or Storage.from_environment(),
        database_url=database_url,
    )


def pruning_settings(tier: Tier, switch: bool | None) -> dict | None:
    """What a run's pruning callback needs: the settings and the model's grid shapes; switch is
    the run's pruning parameter (None: the tier's plan setting)."""
    settings = tier.pruning if switch is None else (tier.pruning or Pruning()) if switch else None
    if settings is None:
        return None
    shapes = sorted({(c.batch_size, c.gradient_accumulation_steps, c.num_epochs) for c in tier.combinations()})
    # The rules added later (rungs_of, the safeguards) appear only when they differ from the rules
    # before them, so the keys of pruned experiments already recorded stay what they were.
    added = {name: value for name, value in dataclasses.asdict(settings).items()
             if name in LEGACY_PRUNING and value != LEGACY_PRUNING[name]}
    return {"method": settings.method, "reduction_factor": settings.reduction_factor,
            "min_fraction": settings.min_fraction, **added, "grid": [list(shape) for shape in shapes]}
