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
    print_figures(results_url, report)
    return 0


def print_figures(results_url: str, report) -> None:
    """This run's own figures (docs/DEMO.md states only what holds on every machine: stand-in
    pre-training is not bit-identical across CPUs, so the second decimal and a close verdict vary)."""
    import sqlalchemy as sa

    from training.results.connection import connect

    with connect(results_url) as connection:
        rows = connection.execute(sa.text(
            "SELECT model_id, max(validation_f1) AS best, min(validation_f1) AS worst FROM experiments "
            "WHERE sweep_run_id = (SELECT sweep_run_id FROM sweep_runs WHERE dag_id = 'sweep_small' "
            "ORDER BY started_at DESC LIMIT 1) AND confirmation_of IS NULL GROUP BY model_id ORDER BY model_id"
        )).mappings().all()
    print("this run's validation F1 per stand-in: best cell, worst cell, spread")
    for row in rows:
        if row["best"] is not None:
            print(f"  {row['model_id']}: {row['best']:.3f}, {row['worst']:.3f}, {row['best'] - row['worst']:.3f}")
    verdict = next((line for line in report.with_suffix(".md").read_text().splitlines()
                    if line.startswith("**Verdict:")), None)
    if verdict:
        print(verdict.replace("**", ""))
    print_exports(results_url)


def print_exports(results_url: str) -> None:
    """The winners the DAG's export task packaged, and the first lines of a model card."""
    import sqlalchemy as sa

    from training.results.connection import connect

    with connect(results_url) as connection:
        rows = connection.execute(sa.text(
            "SELECT model_id, destination, card, verified_rows FROM exports WHERE (dag_id, run_id) = (SELECT dag_id, "
            "run_id FROM sweep_runs WHERE dag_id = 'sweep_small' ORDER BY started_at DESC LIMIT 1) ORDER BY model_id"
        )).mappings().all()
    if not rows:
        print("no model was exported (see the export task's log)")
        return
    for row in rows:
        print(f"exported {row['model_id']}: {row['destination']} ({row['verified_rows']} test rows reproduced)")
    print(f"its model card, {rows[0]['destination']}/README.md, begins:")
    print("\n".join(f"  {line}" for line in rows[0]["card"].splitlines()[:12]))


if __name__ == "__main__":
    sys.exit(main())
