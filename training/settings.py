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

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Storage:
        env = os.environ if environ is None else environ
        home = Path(env.get("SWEEP_HOME") or Path.cwd() / ".sweep").resolve()
        model_root = env.get("SWEEP_MODEL_ROOT")
        return cls(
            home=str(home),
            experiments_dir=str(Path(env.get("SWEEP_EXPERIMENTS_DIR") or home / "experiments").resolve()),
            reports_dir=str(Path(env.get("SWEEP_REPORTS_DIR") or home / "reports").resolve()),
            cache_dir=str(Path(env.get("SWEEP_CACHE_DIR") or home / "cache").resolve()),
            gpu_lock_dir=env.get("SWEEP_GPU_LOCK_DIR") or "/tmp/sweep-gpu-locks",
            model_root=str(Path(model_root).resolve()) if model_root else None,
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
    url = (os.environ if environ is None else environ).get(DATABASE_URL_VARIABLE) or None
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
        env = os.environ if environ is None else environ
        return cls(env.get("SWEEP_DATASET") or None, env.get("SWEEP_DEFAULT_BUDGET") or None)


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
