"""The training plan: typed, frozen objects loaded from the plan file and validated once.

Everything downstream (DAG generator, operator, training run) trusts these objects; every
mistake in the file is reported here with the file, the field and the bad value.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

DEFAULT_PLAN_PATH = Path(__file__).with_name("plan.toml")
TIER_NAMES = ("small", "medium", "large")
PRIORITY_WEIGHTS = {"low": 1, "medium": 2, "high": 3}
GRID_FIELDS = ("learning_rate", "batch_size", "num_epochs", "weight_decay", "gradient_accumulation_steps")
BUDGET_FIELDS = ("max_train_samples", "max_eval_samples", "max_test_samples", "max_length", "eval_steps",
                 "logging_steps", "max_steps",
                 "max_train_seconds", "learning_rate_scale")
NO_SCHEDULE = "none"  # a tier that only runs when triggered
ARCHITECTURES = ("roberta", "t5")
# One rule set for the form, the plan and the CLI. Seeds: the results table's integer column
# (2**31 - 1), less the 10 seed-confirmation reruns (seed + 1 ... seed + 10) that must fit after it;
# torch and numpy take any of them.
MAX_CONFIRM_SEEDS = 10
SEED_MAX = 2**31 - 1 - MAX_CONFIRM_SEEDS
MAX_STEPS_CAP = 10_000_000  # a step cap above this is a typing slip: no run here takes 10 million steps
MAX_LENGTH_CAP = 32_768  # tokens per example; each model is cut to what it can embed (CodeBERT: 512)
# A hub id (org/name in the hub's characters), or an explicit local folder (an absolute path):
# either way no component is "." or "..", so an id never leads a path out of the folder it is in.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def model_id_problem(model_id: object) -> str | None:
    """Why a model id cannot be used, or None."""
    if not isinstance(model_id, str) or not model_id:
        return "must be a hub id (org/name) or an absolute path to a local model folder"
    if model_id.startswith("/"):
        parts = model_id.split("/")[1:]
        return None if all(part not in ("", ".", "..") for part in parts) else \
            "a local model folder must be a plain absolute path (no empty, '.' or '..' components)"
    if HUB_ID.fullmatch(model_id) and ".." not in model_id:
        return None
    return "not a hub id (org/name: letters, digits, '-', '_' and '.', not starting with '.') nor an absolute path"


def seed_problem(seed: object) -> str | None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        return (f"must be a whole number from 0 to {SEED_MAX:,} (the results table's range, with room for the "
                "seed reruns)")
    return None


def max_steps_problem(max_steps: object) -> str | None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_STEPS_CAP:
        return f"must be a whole number from 1 to {MAX_STEPS_CAP:,}, or empty for no cap"
    return None


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the file, the field and the value."""

    def __init__(self, path: Path | str, field_name: str, value: Any, problem: str):
        self.path, self.field_name, self.value = str(path), field_name, value
        super().__init__(f"{path}: {field_name} = {value!r}: {problem}")


class ParamError(ValueError):
    """A run parameter (trigger param or CLI option) that the plan's rules refuse; names the
    parameter and the value."""

    def __init__(self, name: str, value: Any, problem: str):
        self.name, self.value = name, value
        super().__init__(f"{name} = {value!r}: {problem}")


def closest(key: str, known) -> str:
    """' (did you mean X?)' for a misspelt key, else the list of known keys."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else f"expected one of {sorted(known)}"


@dataclass(frozen=True)
class Settings:
    eval_steps: int
    logging_steps: int
    metric_for_best_model: str
    early_stopping_patience: int
    early_stopping_min_delta: float
    mixed_precision: bool
    pin_memory: bool
    max_length: int
    seed: int
    # Draws the rows a budget's caps keep (max_train_samples, ...): fixed, so a seed rerun (the
    # trigger's Seed, confirm_seeds) varies initialisation and data order only, never the data.
    data_seed: int = 42
    confirm_seeds: int = 0  # after the grid, retrain each model's chosen configuration with this many more seeds
    # The full resumable state (optimizer, scheduler, RNG) is saved at most this often (and on
    # SIGTERM); a new best saves the model only. 0: the full state at every evaluation.
    full_checkpoint_minutes: float = 30.0
    # At an experiment's end, how long it waits for the artifact store to take what is left to send
    # before its row names what is missing (kept on the host for a later sync).
    upload_wait_minutes: float = 10.0
    # Where the Trainer's own integrations also send each experiment's curves: "none", or
    # "tensorboard" (event files kept with the experiment's artifacts). Postgres stays the record.
    report_to: str = "none"


@dataclass(frozen=True)
class Scheduling:
    retries: int
    retry_delay_seconds: int
    start_date: date
    late_start_tolerance_minutes: int
    keep_checkpoints_of_runs: int = 0  # after each run, older runs' best weights go (0: every run keeps them)


@dataclass(frozen=True)
class DatasetSpec:
    source: str  # a hub id, or a local folder of {train,validation,test}.{jsonl,parquet,csv}
    text_columns: tuple[str, ...]  # one column: single snippet; two: a pair
    label_column: str
    positive_label: str | int | bool | None = None  # the class binary F1 is of (see training/data/contract.py)


@dataclass(frozen=True)
class Budget:
    """Caps that shrink a run; None means the plan's own value."""

    name: str
    max_train_samples: int | None = None
    max_eval_samples: int | None = None  # validation only: the test split is never capped by it
    max_test_samples: int | None = None  # test is capped only when a budget says so, and the count is recorded
    max_length: int | None = None
    eval_steps: int | None = None
    logging_steps: int | None = None
    max_steps: int | None = None
    max_train_seconds: int | None = None  # stop training after this long (stop reason "timeout")
    # Multiplies every learning rate of the grid (the records keep the grid's values): scaled-down
    # stand-ins need larger steps than the 60M-770M-parameter models the grid was chosen for.
    learning_rate_scale: float | None = None


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    batch_size: int
    num_epochs: int
    weight_decay: float
    gradient_accumulation_steps: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in GRID_FIELDS}


@dataclass(frozen=True)
class Pruning:
    """Asynchronous successive halving across a model's grid (training/engine/pruning.py): rungs at
    min_fraction, min_fraction x reduction_factor, ... of the largest planned run of the model's grid
    (in training samples); at each, a run continues only if it is in the top 1/reduction_factor of
    the runs of the same model in the same sweep run that reached it."""

    method: str = "asha"
    reduction_factor: int = 3
    min_fraction: float = 0.1
    # engine/halving.py: rungs as fractions of the largest planned run ("grid") or of each run's own
    # plan ("own"); the safeguards that keep a run below the threshold: within noise_z standard errors
    # of the rung leader's F1 (0: none), and the last run of a learning rate still in the race. The
    # defaults are the rules that never lost a model's best configuration in `make bench`'s replay
    # (docs/BENCHMARKS.md); before them, pruning was "grid" without safeguards (LEGACY_PRUNING).
    rungs_of: str = "own"
    noise_z: float = 1.0
    keep_one_per_learning_rate: bool = False

    def rungs(self) -> list[float]:
        """The rungs as fractions of the reference (largest planned) run, below 1."""
        rungs, fraction = [], self.min_fraction
        while fraction < 1 - 1e-9:
            rungs.append(round(fraction, 6))
            fraction *= self.reduction_factor
        return rungs


LEGACY_PRUNING = {"rungs_of": "grid", "noise_z": 0.0, "keep_one_per_learning_rate": False}


@dataclass(frozen=True)
class Tier:
    name: str
    priority: str
    models: tuple[str, ...]
    gradient_checkpointing: bool | str  # True, False or "auto": on only after an out-of-memory, before halving
    schedule: str | None  # cron expression of the nightly rerun, UTC; None: only when triggered
    grid: dict[str, tuple] = field(hash=False)
    pruning: Pruning | None = None  # None: every grid point trains until its own early stopping (the plan as written)
    max_gpu_hours: float | None = None  # the budget gate: a run estimated above this fails before training
    compile: bool | str = False  # torch.compile the model: True, False, or "auto" (on CUDA only)

    @property
    def priority_weight(self) -> int:
        return PRIORITY_WEIGHTS[self.priority]

    def combinations(self) -> list[Hyperparameters]:
        """The grid as an explicit list, sorted so map indexes are stable across parses."""
        values = [sorted(self.grid[name]) for name in GRID_FIELDS]
        return [Hyperparameters(*combo) for combo in itertools.product(*values)]


@dataclass(frozen=True)
class Deployment:
    """What a training task's pod gets under KubernetesExecutor (the plan's [deployment] section;
    plugins/sweep_airflow/kubernetes.py builds the pod override). Other executors ignore it."""

    image: str | None = None  # None: the image the Airflow deployment runs
    gpu_resource: str = "nvidia.com/gpu"  # the extended resource name the device plugin advertises
    gpus_per_task: int = 1
    node_selector: tuple[tuple[str, str], ...] = ()  # (label, value) pairs
    tolerations: tuple[tuple[tuple[str, str], ...], ...] = ()  # each a toleration's fields as pairs


@dataclass(frozen=True)
class Plan:
    path: str
    version: str  # hash of the file's text: which plan a run was built from
    settings: Settings
    scheduling: Scheduling
    dataset: DatasetSpec
    budgets: dict[str, Budget] = field(hash=False)
    tiers: dict[str, Tier] = field(hash=False)
    architectures: dict[str, str] = field(hash=False)
    deployment: Deployment = Deployment()

    def tier_of(self, model_id: str) -> Tier:
        return next(tier for tier in self.tiers.values() if model_id in tier.models)


def configuration_label(point) -> str:
    """A grid point as the report and the logs write it: anything with the grid's attributes (a
    Hyperparameters, a result row). The UI names mapped instances its own way, in the DAG's
    map_index_template ("lr=2e-05 bs=16 ep=3 wd=0.01"), which the run checks echo."""
    return (f"lr {point.learning_rate:g}, batch {point.batch_size}, {point.num_epochs} epochs, "
            f"wd {point.weight_decay:g}")


def planned_steps(train_rows: int, batch: int, accumulation: int, epochs: int, max_steps: int | None) -> int:
    """Optimizer steps a run plans: the grid's epochs, or the step cap where it is shorter (a cap
    only ever shortens a run)."""
    epochs_steps = epochs * max(math.ceil(math.ceil(train_rows / batch) / accumulation), 1)
    return min(max_steps, epochs_steps) if max_steps else epochs_steps


def planned_samples(train_rows: int, batch: int, accumulation: int, epochs: int, max_steps: int | None) -> int:
    return planned_steps(train_rows, batch, accumulation, epochs, max_steps) * batch * accumulation


def load_plan(path: Path | str | None = None) -> Plan:
    """Read and validate the plan file (default: $SWEEP_PLAN_FILE, else the packaged plan)."""
    from training.settings import setting

    path = Path(path or setting("SWEEP_PLAN_FILE") or DEFAULT_PLAN_PATH)
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise PlanError(path, "<file>", str(path), "plan file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(path, "<file>", str(path), f"not valid TOML: {error}") from None
    from training.plan_validation import PlanValidator

    return PlanValidator(path, hashlib.sha256(text.encode()).hexdigest()[:12]).plan(raw)
