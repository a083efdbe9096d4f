"""`make demo`: the small tier end to end through Airflow, offline, on this machine.

Starts the embedded Postgres, creates and migrates the results and Airflow databases, generates
the stdlib clone-pair dataset and pre-trains the stand-in models on it (once), runs the small-tier
DAG with the `demo` budget, and prints the report's path. Safe to run again.
"""

from __future__ import annotations

import json
import sys
import time

from devstack.local import REPO_ROOT, airflow_env, latest_report, prepare_airflow, prepare_offline_assets, run_tier
from training.results import database


def main() -> int:
    started = time.monotonic()
    home = REPO_ROOT / ".sweep"
    reports_dir = REPO_ROOT / "reports"
    results_url, airflow_url = database.provision(home / "pgdata")
    print(f"Postgres up; results DB: {results_url}")

    models_dir, data_dir = prepare_offline_assets(home)

    env = airflow_env(home, results_url, airflow_url,
                      SWEEP_MODEL_ROOT=str(models_dir), SWEEP_REPORTS_DIR=str(reports_dir))
    prepare_airflow(env)
    setup_seconds = time.monotonic() - started
    print(f"set-up done in {setup_seconds:.0f} s; running the small tier (16 experiments) ...")

    conf = json.dumps({"budget": "demo", "dataset": str(data_dir)})
    try:
        run_seconds = run_tier("small", conf, env, home / "logs" / "demo-small.log")
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    report = latest_report(reports_dir, "sweep_small")
    print(f"small tier done in {run_seconds:.0f} s (set-up {setup_seconds:.0f} s)")
    print(f"report: {report}")
    print(f"markdown: {report.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
