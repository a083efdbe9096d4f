"""Command line of the training package: `python -m training <command>`; also what the Airflow
operator runs, and what a GPU machine without Airflow runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path


def run_experiment_command(args) -> int:
    from training.experiment import failed_result, run_experiment
    from training.spec import ExperimentSpec

    spec = ExperimentSpec.read(args.spec)
    started_at = datetime.now(timezone.utc)
    try:
        result, exit_code = run_experiment(spec, args.time_limit_seconds), 0
    except Exception as error:  # recorded as a failed experiment, then the task fails
        import traceback

        traceback.print_exc()
        result, exit_code = failed_result(spec, error, started_at), 1
    Path(args.result).write_text(json.dumps(result, indent=2))
    url = os.environ.get("SWEEP_DATABASE_URL")
    if not url:
        print("SWEEP_DATABASE_URL is not set: the result is only in", args.result)
        return exit_code
    import sqlalchemy

    from training.results import record_experiment

    try:
        record_experiment(url, result)
    except sqlalchemy.exc.OperationalError as error:
        # Nothing is lost: the result file stays beside the checkpoint; a retry or `db sync` loads it.
        print(f"could not write to the results DB ({error.orig}); the result is kept in {args.result} and "
              "beside the checkpoint: a retry records it, or run `python -m training db sync`")
        return 3
    print(f"recorded experiment {result['experiment_key']} ({result['stop_reason']}) in the results DB")
    return exit_code


def make_dataset_command(args) -> int:
    from training.synthetic import generate

    counts = generate(Path(args.out), max_examples=args.max_examples, seed=args.seed)
    print(f"wrote {counts} to {args.out}")
    return 0


def build_standins_command(args) -> int:
    from training.plan import load_plan
    from training.standins import build_stand_ins

    models = args.models.split(",") if args.models else None
    for folder in build_stand_ins(load_plan(args.plan), Path(args.data), Path(args.out), args.max_length,
                                  model_ids=models, full_size=args.full_size):
        print(folder)
    return 0


def db_command(args) -> int:
    from training import database

    if args.action == "stop":
        print("stopped" if database.stop_embedded_server() else "not running")
    elif args.action == "up":
        results_url, airflow_url = database.provision()
        print(f"SWEEP_DATABASE_URL={results_url}")
        print(f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={airflow_url}")
    elif args.action == "migrate":
        applied = database.migrate(database.results_database_url())
        print(f"results DB migrated: {', '.join(applied) or 'already up to date'}")
    elif args.action == "sync":
        from training.paths import experiments_root
        from training.results import sync_result_files

        root = Path(args.root) if args.root else experiments_root()
        counts = sync_result_files(database.results_database_url(), root)
        print(f"loaded {counts['loaded']} result files the database lacked; {counts['present']} were already there")
    elif args.action == "add-user":
        if not args.name or args.role not in ("writer", "analyst"):
            raise SystemExit("db add-user needs --name and --role writer|analyst")
        database.add_login(database.results_database_url(), args.name, args.role, os.environ.get("SWEEP_USER_PASSWORD"))
        print(f"login {args.name} can now connect as a sweep {args.role}")
    return 0


def render_report_command(args) -> int:
    from training.database import results_database_url
    from training.report import render_run_report

    print(render_run_report(results_database_url(), args.dag_id, args.run_id))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run-experiment", help="train and evaluate one experiment from a spec file")
    run.add_argument("--spec", required=True, help="experiment spec JSON (written by the operator)")
    run.add_argument("--result", required=True, help="where to write the result record JSON")
    run.add_argument("--time-limit-seconds", type=float, default=None,
                     help="stop training after this long (stop reason timeout), keeping the best checkpoint")
    run.set_defaults(handler=run_experiment_command)

    dataset = commands.add_parser("make-dataset", help="generate the offline stdlib bug-detection dataset")
    dataset.add_argument("--out", required=True)
    dataset.add_argument("--max-examples", type=int, default=3000)
    dataset.add_argument("--seed", type=int, default=42)
    dataset.set_defaults(handler=make_dataset_command)

    standins = commands.add_parser("build-standins", help="build scaled-down stand-ins of the plan's models")
    standins.add_argument("--data", required=True, help="local dataset folder to train the tokenizer on")
    standins.add_argument("--out", required=True, help="model mirror root; models land in <out>/<hub id>")
    standins.add_argument("--plan", default=None)
    standins.add_argument("--max-length", type=int, default=512)
    standins.add_argument("--models", default=None, help="comma-separated hub ids (default: every model of the plan)")
    standins.add_argument("--full-size", action="store_true",
                          help="the published sizes with random weights: to measure real cost without the hub")
    standins.set_defaults(handler=build_standins_command)

    db = commands.add_parser("db", help="results database: up | migrate | sync | add-user | stop")
    db.add_argument("action", choices=["up", "migrate", "sync", "add-user", "stop"],
                    help="up: start the embedded server, create the results and Airflow databases, migrate, "
                         "print their URLs. migrate / sync / add-user act on $SWEEP_DATABASE_URL, else the "
                         "embedded results DB. sync: load every result file the database lacks. add-user: "
                         "a login in the writer or analyst role, password from $SWEEP_USER_PASSWORD")
    db.add_argument("--root", default=None, help="sync: folder to search for result.json (default: experiments)")
    db.add_argument("--name", default=None, help="add-user: the login's name")
    db.add_argument("--role", default=None, help="add-user: writer or analyst")
    db.set_defaults(handler=db_command)

    report = commands.add_parser("render-report", help="render the report of one DAG run")
    report.add_argument("--dag-id", required=True)
    report.add_argument("--run-id", required=True)
    report.set_defaults(handler=render_report_command)

    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
