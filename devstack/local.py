"""Airflow on one machine for this checkout: the environment that points Airflow at the project's
DAGs, plugins and Postgres databases, and the set-up steps the demo and the tests share.

Every step is idempotent, so `make demo` can run again on the same state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def airflow_env(sweep_home: Path, results_url: str, airflow_db_url: str, **extra: str) -> dict[str, str]:
    """os.environ plus what makes Airflow (and the training subprocesses) use this checkout."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SWEEP_HOME": str(sweep_home),
        "SWEEP_DATABASE_URL": results_url,
        "AIRFLOW_HOME": str(sweep_home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **extra,
    }


def run(command: list[str], env: dict[str, str], log_path: Path | None = None) -> None:
    """Run a set-up command; on failure raise with its output (or point at its log)."""
    if log_path is None:
        completed = subprocess.run(command, env=env, capture_output=True, text=True)
        output = completed.stdout + completed.stderr
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            completed = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        output = f"(full output in {log_path})\n" + log_path.read_text()[-4000:]
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {completed.returncode}:\n{output}")


def prepare_airflow(env: dict[str, str], gpu_slots: int | None = None) -> None:
    """Migrate Airflow's metadata DB and create the `gpu` pool, one slot per GPU of this host (one
    on a CPU-only machine): a missing pool silently blocks every task."""
    from training.engine.gpu_lease import host_gpu_count

    gpu_slots = gpu_slots or max(host_gpu_count(), 1)
    run(["airflow", "db", "migrate"], env)
    run(["airflow", "pools", "set", "gpu", str(gpu_slots), "GPUs available to training tasks"], env)


def run_tier(tier: str, conf: str, env: dict[str, str], log_path: Path) -> float:
    """Run one tier's DAG end to end in-process (`airflow dags test`); return its seconds."""
    started = time.monotonic()
    run(["airflow", "dags", "test", f"sweep_{tier}", "--conf", conf], env, log_path)
    return time.monotonic() - started


# The demo trains the small tier. Steps alone bound the pre-training, with no time limit: a busy
# machine takes longer rather than making weaker stand-ins (a time limit once cut one to 76 of its
# 800 steps, and the weak stand-in was cached for good). The medium and large stand-ins get a token
# pre-training: the demo does not run them.
PRETRAIN_STEPS = {"small/roberta": 800, "small/t5": 800, "medium": 50, "large": 50}


def prepare_offline_assets(home: Path, log=print) -> tuple[Path, Path]:
    """The stdlib clone pairs and the stand-in models pre-trained on them, made once under home (the
    pair set again when an older version made it, the stand-ins again when the data changed);
    return (models, data). The stdlib bug-detection set is the single-snippet example beside it."""
    from training.data.contract import DataError
    from training.data.loading import load_dataset
    from training.offline.pairs import GENERATOR, generate
    from training.offline.standins import build_stand_ins
    from training.plan import DatasetSpec, load_plan

    data_dir, models_dir = home / "data" / "stdlib-clones", home / "models"
    manifest = data_dir / "dataset.json"
    try:
        made_here = manifest.is_file() and json.loads(manifest.read_text())["about"].get("generator") == GENERATOR
        dataset = made_here and load_dataset(DatasetSpec(str(data_dir), ("func1", "func2"), "label"))
    except (DataError, KeyError, ValueError):  # made by an older version
        dataset = None
    if not dataset:
        started = time.monotonic()
        counts = generate(data_dir)
        log(f"generated the stdlib clone-pair dataset {counts} in {time.monotonic() - started:.0f} s")
        dataset = load_dataset(DatasetSpec(str(data_dir), ("func1", "func2"), "label"))
    plan = load_plan()
    stale = stale_stand_ins(plan, models_dir, dataset.fingerprint)
    if stale:
        log(f"building the stand-ins: {stale[0]}" + (f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""))
        started = time.monotonic()
        build_stand_ins(plan, data_dir, models_dir, max_length=128, pretrain_steps=PRETRAIN_STEPS, log=log)
        log(f"built and pre-trained the stand-ins in {time.monotonic() - started:.0f} s (once; cached in {models_dir})")
    return models_dir, data_dir


def stale_stand_ins(plan, models_dir: Path, fingerprint: str) -> list[str]:
    """Why each of the plan's cached stand-ins must be built again (absent, another builder or
    dataset, or pre-trained short of its steps); empty when all are current."""
    from training.offline.standins import BUILDER, missing_pretraining, per_model

    reasons = []
    for tier in plan.tiers.values():
        for model_id in tier.models:
            marker = models_dir / model_id / "stand_in.json"
            info = json.loads(marker.read_text()) if marker.is_file() else None
            steps = per_model(PRETRAIN_STEPS, tier.name, plan.architectures[model_id])
            if info is None:
                reasons.append(f"{model_id}: not built yet")
            elif info.get("builder") != BUILDER or info.get("dataset_fingerprint") != fingerprint:
                reasons.append(f"{model_id}: built by another version or on other data")
            elif why := missing_pretraining(info, steps):
                reasons.append(f"{model_id}: {why}")
    return reasons


def latest_report(reports_dir: Path, dag_id: str) -> Path | None:
    reports = sorted((reports_dir / dag_id).glob("*/report.html"), key=lambda p: p.stat().st_mtime)
    return reports[-1] if reports else None
