"""Runtime settings: where the project keeps its state on disk and which results database it
writes to. Read from the environment once, where a run starts (the operator, or the CLI), and
carried from there in the experiment spec; nothing downstream reads these variables again.

The database policy, everywhere: the results database is $SWEEP_DATABASE_URL. Where it is unset,
a task that must record results fails at once saying so; only the development tooling
(`make demo`, `make airflow`, `python -m training db up`) starts the embedded Postgres, and it
sets the variable for everything it launches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATABASE_URL_VARIABLE = "SWEEP_DATABASE_URL"


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str
    read_by: str = "training"  # training (this module), or the development tooling that reads it


# Every environment variable the project reads, in one table (docs/ENVIRONMENT.md shows the same,
# and a test checks both against the code). The training package reads its own only here.
ENVIRONMENT = (
    Variable(DATABASE_URL_VARIABLE, "the results database, a Postgres URL",
             "unset: a task that records results fails saying so; make demo, make airflow and `db up` start "
             "the embedded Postgres and set it"),
    Variable("SWEEP_HOME", "generated state: database, data, stand-ins, checkpoints, caches", "./.sweep"),
    Variable("SWEEP_EXPERIMENTS_DIR", "checkpoints and result files, a folder per experiment",
             "$SWEEP_HOME/experiments"),
    Variable("SWEEP_ARTIFACTS_URL", "the artifact store every host shares: s3://bucket/prefix, gs://..., or a path",
             "unset: the local folders below are the store"),
    Variable("SWEEP_REPORTS_DIR", "the rendered reports, a folder per DAG run", "$SWEEP_HOME/reports"),
    Variable("SWEEP_CACHE_DIR", "tokenized splits, leakage counts and the compile cache", "$SWEEP_HOME/cache"),
    Variable("SWEEP_GPU_LOCK_DIR", "the per-GPU lock files every worker on a host shares", "/tmp/sweep-gpu-locks"),
    Variable("SWEEP_MODEL_ROOT", "a local mirror of the hub: models at <root>/<hub id>", "unset: the hub"),
    Variable("SWEEP_GPU_COUNT", "GPUs on this host, instead of asking nvidia-smi", "unset: nvidia-smi"),
    Variable("SWEEP_PLAN_FILE", "the training plan", "the packaged training/plan.toml"),
    Variable("SWEEP_SQL_DIR", "the folder of SQL migrations and queries", "the checkout's sql/"),
    Variable("SWEEP_DATASET", "the dataset a run uses when its trigger leaves it empty (and scheduled runs)",
             "unset: the plan's"),
    Variable("SWEEP_DEFAULT_BUDGET", "the budget a run uses when its trigger leaves it empty (and scheduled runs)",
             "full"),
    Variable("SWEEP_USER_PASSWORD", "the password `db add-user` gives a new login", "unset: refused"),
    Variable("SWEEP_PIPELINE_PASSWORD", "the pipeline role's password in docker-compose.yml", "none: required",
             "docker-compose.yml"),
    Variable("SWEEP_AIRFLOW_HOST", "the interface make airflow's api-server listens on", "127.0.0.1",
             "scripts/stack.py"),
    Variable("SWEEP_AIRFLOW_PORT", "make airflow's api-server port", "8080", "scripts/stack.py"),
    Variable("SWEEP_EXECUTOR", "make airflow's executor: LocalExecutor or CeleryExecutor", "LocalExecutor",
             "scripts/stack.py"),
    Variable("SWEEP_COMPOSE_CHECK_KEEP", "1: make compose-check leaves the stack up (to look around)", "unset: removed",
             "scripts/compose_check.py"),
    Variable("SWEEP_DEBIAN_MIRROR", "the Debian mirror make compose-check's debootstrap uses",
             "http://deb.debian.org/debian", "devstack/podman.py"),
    Variable("SWEEP_BENCH_DATA", "make bench's BigCloneBench subsets", "../shared/data/bigclonebench",
             "scripts/bench.py"),
)
TRAINING_VARIABLES = frozenset(v.name for v in ENVIRONMENT if v.read_by == "training")


def setting(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One of the table's variables as set (None when unset or empty); a name outside the table is
    a programming error."""
    if name not in TRAINING_VARIABLES:
        raise KeyError(f"{name} is not in training.settings.ENVIRONMENT")
    return (os.environ if environ is None else environ).get(name) or None


class SettingsError(RuntimeError):
    """A runtime setting that a step needs is missing."""


@dataclass(frozen=True)
class Storage:
    """Every location on disk, resolved to absolute paths."""

    home: str  # generated state: database, data, stand-ins, checkpoints ($SWEEP_HOME or ./.sweep)
    experiments_dir: str  # checkpoints and result files, one folder per experiment
    reports_dir: str
    cache_dir: str  # tokenized splits, shared by every experiment of a model
    gpu_lock_dir: str  # machine-wide: every worker on a host must see the same GPU locks
    model_root: str | None  # a local mirror of the hub: <root>/<hub id> (air-gapped clusters, stand-ins)
    artifacts_url: str | None = None  # the artifact store (training/artifacts.py); None: the local folders

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Storage:
        def env(name):
            return setting(name, environ)

        home = Path(env("SWEEP_HOME") or Path.cwd() / ".sweep").resolve()
        model_root = env("SWEEP_MODEL_ROOT")
        return cls(
            home=str(home),
            experiments_dir=str(Path(env("SWEEP_EXPERIMENTS_DIR") or home / "experiments").resolve()),
            reports_dir=str(Path(env("SWEEP_REPORTS_DIR") or home / "reports").resolve()),
            cache_dir=str(Path(env("SWEEP_CACHE_DIR") or home / "cache").resolve()),
            gpu_lock_dir=env("SWEEP_GPU_LOCK_DIR") or "/tmp/sweep-gpu-locks",
            model_root=str(Path(model_root).resolve()) if model_root else None,
            artifacts_url=env("SWEEP_ARTIFACTS_URL"),
        )

    def experiment_dir(self, dag_id: str, run_id: str, experiment_key: str) -> Path:
        """Checkpoints, attempts and result of one experiment: keyed by its stable key, so a retry
        finds its own last checkpoint."""
        return self._run_dir(dag_id, run_id) / experiment_key

    def task_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
        """One task try's spec and result files."""
        return self._run_dir(dag_id, run_id) / "tasks" / f"{safe_name(task_id)}-{map_index}-try{try_number}"

    def report_dir(self, dag_id: str, run_id: str) -> Path:
        return Path(self.reports_dir) / safe_name(dag_id) / safe_name(run_id)

    def tokenized_dir(self) -> Path:
        return Path(self.cache_dir) / "tokenized"

    def compile_cache_dir(self) -> Path:
        """torch.compile's inductor cache: shared by every experiment of a model, kept across runs."""
        return Path(self.cache_dir) / "inductor"

    def leakage_dir(self) -> Path:
        return Path(self.cache_dir) / "leakage"

    def _run_dir(self, dag_id: str, run_id: str) -> Path:
        return Path(self.experiments_dir) / safe_name(dag_id or "cli") / safe_name(run_id or "adhoc")


def database_url(required_for: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """$SWEEP_DATABASE_URL; None when unset, unless `required_for` names what needs it."""
    url = setting(DATABASE_URL_VARIABLE, environ)
    if url is None and required_for:
        raise SettingsError(
            f"{DATABASE_URL_VARIABLE} is not set: {required_for} needs the results database. Point it at "
            "your Postgres, or run `python -m training db up` to start the embedded one and print its URL")
    return url


@dataclass(frozen=True)
class RunDefaults:
    """What a run uses when its trigger leaves a param empty, and what scheduled runs use: the plan's
    own values unless a deployment overrides them (an offline stack points at local data)."""

    dataset: str | None  # $SWEEP_DATASET: a hub id or local folder instead of the plan's dataset
    budget: str | None  # $SWEEP_DEFAULT_BUDGET: a budget of the plan instead of "full"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RunDefaults:
        return cls(setting("SWEEP_DATASET", environ), setting("SWEEP_DEFAULT_BUDGET", environ))


def safe_name(text: str) -> str:
    """A run id or model id as a single path component (run ids carry ':' and '+'): never a
    separator, and never "." or "..", so no name taken from a request, a param or a plan can lead
    a path out of the folder it belongs in."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    return re.sub(r"^\.+", lambda dots: "_" * len(dots.group()), name) or "_"


def inside(folder: Path | str, path: Path) -> Path | None:
    """path resolved (symlinks followed), if it stays inside the resolved folder; else None."""
    resolved = Path(path).resolve()
    return resolved if resolved.is_relative_to(Path(folder).resolve()) else None
