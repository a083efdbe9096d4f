"""Running one experiment through the real CLI entry point, as the operator does."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from training.parameters import RunParameters
from training.plan import Hyperparameters, load_plan
from training.settings import Storage, database_url
from training.spec import build_spec


def with_runtime(spec, env_extra: dict):
    """The spec as it is built where a run starts with this environment: storage and database."""
    environ = {**os.environ, **env_extra}
    return dataclasses.replace(spec, storage=Storage.from_environment(environ),
                               database_url=database_url(environ=environ))


FAULTS = Path(__file__).with_name("faults.py")


def cli_command(tmp_path: Path, spec, *extra_args: str, env_extra: dict | None = None,
                faults: dict | None = None) -> list[str]:
    """The operator's command for this spec; with faults ({"kill_at_step": 5, "max_batch": 4,
    "seconds_per_step": 60}), the same command through the tests' fault entry point (faults.py)."""
    spec_path, result_path = tmp_path / "spec.json", tmp_path / "result.json"
    with_runtime(spec, env_extra or {}).write(spec_path)
    entry = ["-m", "training"]
    if faults:
        entry = [str(FAULTS), *(part for name, value in faults.items()
                                for part in (f"--{name.replace('_', '-')}", str(value))), "--"]
    return [sys.executable, *entry, "run-experiment", "--spec", str(spec_path), "--result", str(result_path),
            *extra_args]


def run_cli(tmp_path: Path, spec, env_extra: dict, *extra_args: str,
            faults: dict | None = None) -> tuple[int, dict, str]:
    result_path = tmp_path / "result.json"
    result_path.unlink(missing_ok=True)
    completed = subprocess.run(cli_command(tmp_path, spec, *extra_args, env_extra=env_extra, faults=faults),
                               env={**os.environ, **env_extra}, capture_output=True, text=True, timeout=600)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return completed.returncode, result, completed.stdout + completed.stderr


# The engine tests use the demo budget for its cadence on the small bug-detection set: evaluation
# every 4 steps on 384 rows. The plan's demo budget is tuned for the clone-pair demo instead, so
# those tests pin the cadence they were written for.
MECHANICS_CADENCE = {"max_train_samples": 384, "max_eval_samples": 96, "max_length": 96, "eval_steps": 4,
                     "logging_steps": 2, "learning_rate_scale": None}


def spec_for(model_id, dataset, budget="tiny", plan=None, run_id="run-1", **hyperparameters):
    values = {"learning_rate": 5e-5, "batch_size": 8, "num_epochs": 3, "weight_decay": 0.01,
              "gradient_accumulation_steps": 1, **hyperparameters}
    spec = build_spec(plan or load_plan(), model_id, Hyperparameters(**values),
                      RunParameters(budget=budget, dataset=str(dataset)), dag_id="test_dag", run_id=run_id)
    return dataclasses.replace(spec, **MECHANICS_CADENCE) if budget == "demo" else spec
