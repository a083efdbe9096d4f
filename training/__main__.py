"""Command line of the training package: `python -m training <command>`; also what the Airflow
operator runs, and what a GPU machine without Airflow runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training import commands

EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 143  # 128 + SIGTERM: stopped on request after saving its full state


def grid_point_spec(args):
    """A spec from the plan's own names: the same function the Airflow operator builds it with."""
    from training.parameters import RunParameters
    from training.tasks import experiment_spec

    hyperparameters = {"learning_rate": args.learning_rate, "batch_size": args.batch_size,
                       "num_epochs": args.epochs, "weight_decay": args.weight_decay}
    if args.gradient_accumulation_steps is not None:
        hyperparameters["gradient_accumulation_steps"] = args.gradient_accumulation_steps
    run = RunParameters(budget=args.budget, dataset=args.dataset or None, max_steps=args.max_steps, seed=args.seed)
    return experiment_spec(model_id=args.model, tier=args.tier, hyperparameters=hyperparameters, run=run,
                           plan_path=args.plan, dag_id=args.dag_id, run_id=args.run_id, require_database=False)


def spec_command(args) -> int:
    spec = grid_point_spec(args)
    spec.write(Path(args.out))
    print(f"wrote the spec of {spec.model_id} {spec.hyperparameters.as_dict()} to {args.out}")
    return 0


def run_experiment_command(args, instruments=None) -> int:
    """instruments (engine/trainer.py Instruments): what the tests' fault entry point adds."""
    from training.spec import ExperimentSpec

    spec = ExperimentSpec.read(args.spec) if args.spec else grid_point_spec(args)
    if not sys.stderr.isatty():  # a task log: progress bars there are lines of "0%|" (set before the libraries load)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if spec.compile and spec.storage is not None:
        # Before torch is imported. One cache for every experiment of this deployment, kept across
        # runs, so only the first pays the full compile. Set, not defaulted: a parent process that
        # ever touched inductor exports its own default folder (torch writes the variable back).
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(spec.runtime().compile_cache_dir())
    from training.engine.experiment import run_experiment
    from training.engine.locks import ExperimentRunning
    from training.engine.trainer import TrainingInterrupted
    from training.results.record import StopReason
    try:
        result = run_experiment(spec, args.time_limit_seconds, instruments)
    except ExperimentRunning as error:  # no result of ours to write or record: it is the other run's
        print(error, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except TrainingInterrupted as error:  # no result yet: the retry resumes from the full save
        print(error, file=sys.stderr)
        return EXIT_INTERRUPTED
    # 1: failed, a retry may succeed; 2: the data is invalid, no retry can help; 0: a result to keep.
    exit_code = {StopReason.FAILED: 1, StopReason.INVALID_DATA: 2}.get(result.stop_reason, 0)
    try:
        Path(args.result).write_text(json.dumps(result.to_dict(), indent=2, default=str))
    except OSError as error:  # a full disk: the database still gets the record
        print(f"could not write {args.result}: {error}", file=sys.stderr)
        exit_code = exit_code or 1
    if not spec.database_url:
        print(f"no results database in the spec: the result is only in {args.result}")
        return exit_code
    import sqlalchemy

    from training.results.store import record_experiment

    try:
        replaced = record_experiment(spec.database_url, result)
    except sqlalchemy.exc.OperationalError as error:
        # Nothing is lost: the result file stays beside the checkpoint; a retry or `db sync` loads it.
        print(f"could not write to the results DB ({error.orig}); the result is kept in {args.result} and "
              "beside the checkpoint: a retry records it, or run `python -m training db sync`")
        return 3
    if not args.spec or not spec.dag_id:
        # Started here, not by a DAG run: no report task will close its sweep run, so this does
        # (it stayed "running" in sweep_runs and the runs views before).
        from training.results.store import finish_sweep_run

        status = finish_sweep_run(spec.database_url, spec.dag_id, spec.run_id, spec.tier, spec.run_type)
        print(f"sweep run {spec.dag_id or '(cli)'} {spec.run_id or '(adhoc)'}: {status}")
    if replaced:
        print(f"recorded experiment {result.experiment_key} ({result.stop_reason}) in the results DB")
    else:
        print(f"experiment {result.experiment_key}: the results DB keeps its earlier successful record; this "
              f"attempt ({result.stop_reason}) is added to its attempts")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = command_line()
    args = parser.parse_args(argv)
    if args.command == "run-experiment" and not args.spec and None in (args.model, args.learning_rate):
        parser.error("run-experiment needs --spec FILE, or a grid point (--model, --learning-rate, ...)")
    return handled(args.handler, args)


def handled(handler, *args) -> int:
    """Run a command; a user's input error is its message and exit 2, an unreachable database its message
    and exit 1: not a traceback."""
    from sqlalchemy.exc import OperationalError

    from training.data.contract import DataError
    from training.export.choose import ExportError
    from training.offline.standins import PretrainingCutShort
    from training.plan import ParamError, PlanError
    from training.results.database import MigrationEdited
    from training.settings import SettingsError

    try:
        return handler(*args)
    except (DataError, ParamError, PlanError, SettingsError, PretrainingCutShort, ExportError,
            MigrationEdited) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:  # the server is down or refuses the login: no traceback to read
        first = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        print(f"error: could not reach the results database ({first}); is it running, and is "
              "SWEEP_DATABASE_URL right?", file=sys.stderr)
        return 1


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True)

    run = subcommands.add_parser("run-experiment", help="train and evaluate one experiment: from a spec file, or "
                                                     "from the plan's names for one grid point")
    run.add_argument("--spec", default=None, help="experiment spec JSON (written by the operator or `spec`)")
    run.add_argument("--result", required=True, help="where to write the result record JSON")
    run.add_argument("--time-limit-seconds", type=float, default=None,
                     help="stop training after this long (stop reason timeout), keeping the best checkpoint")
    add_grid_point_arguments(run, required=False)
    run.set_defaults(handler=run_experiment_command)

    spec = subcommands.add_parser("spec", help="write the spec of one grid point, as the operator builds it")
    spec.add_argument("--out", required=True, help="where to write the spec JSON")
    add_grid_point_arguments(spec, required=True)
    spec.set_defaults(handler=spec_command)

    dataset = subcommands.add_parser("make-dataset", help="generate an offline dataset from the standard library")
    dataset.add_argument("--out", required=True)
    dataset.add_argument("--kind", choices=["clones", "bugs"], default="clones",
                         help="clones: func1/func2 pairs, the default task's shape (the demo's); bugs: single "
                              "snippets, half with an injected operator bug")
    dataset.add_argument("--max-examples", type=int, default=3000)
    dataset.add_argument("--seed", type=int, default=42)
    dataset.set_defaults(handler=commands.make_dataset_command)

    standins = subcommands.add_parser("build-standins", help="build scaled-down stand-ins of the plan's models")
    standins.add_argument("--data", required=True, help="local dataset folder to train the tokenizer on")
    standins.add_argument("--out", required=True, help="model mirror root; models land in <out>/<hub id>")
    standins.add_argument("--plan", default=None)
    standins.add_argument("--max-length", type=int, default=512)
    standins.add_argument("--models", default=None, help="comma-separated hub ids (default: every model of the plan)")
    standins.add_argument("--full-size", action="store_true",
                          help="the published sizes with random weights: to measure real cost without the hub")
    standins.add_argument("--pretrain-steps", type=int, default=0,
                          help="pre-train each stand-in on the data's training split first (masked LM / denoising)")
    standins.add_argument("--pretrain-seconds", type=float, default=None,
                          help="a time limit for each pre-training; one that is hit fails the build and saves "
                               "nothing for that model (default: none, the steps alone bound it)")
    standins.set_defaults(handler=commands.build_standins_command)

    db = subcommands.add_parser("db", help="results database: up | migrate | sync | add-user | stop")
    db.add_argument("action", choices=["up", "migrate", "sync", "add-user", "stop"],
                    help="up: start the embedded server, create the results and Airflow databases, migrate, "
                         "print their URLs. migrate / sync / add-user act on $SWEEP_DATABASE_URL, else the "
                         "embedded results DB. sync: send what the artifact store missed, then load every result "
                         "file the database lacks. add-user: a login in the writer or analyst role, password from "
                         "$SWEEP_USER_PASSWORD")
    db.add_argument("--root", default=None, help="sync: folder to search for result.json (default: experiments)")
    db.add_argument("--name", default=None, help="add-user: the login's name")
    db.add_argument("--role", default=None, help="add-user: writer or analyst")
    db.add_argument("--no-password", action="store_true",
                    help="add-user: a login without a password (trusted local sockets only)")
    db.set_defaults(handler=commands.db_command)

    check_data = subcommands.add_parser("check-data", help="check a dataset as a run would, before triggering")
    check_data.add_argument("source", help="a local dataset folder or a hub id")
    check_data.add_argument("--plan", default=None, help="plan file whose [dataset] columns apply (default: packaged)")
    check_data.set_defaults(handler=commands.check_data_command)

    check_plan = subcommands.add_parser("check-plan", help="check a plan file as the DAGs and runs would")
    check_plan.add_argument("file", nargs="?", default=None,
                            help="plan file (default: $SWEEP_PLAN_FILE, else the packaged plan)")
    check_plan.set_defaults(handler=commands.check_plan_command)

    report = subcommands.add_parser("render-report", help="render the report of one DAG run")
    report.add_argument("--dag-id", required=True)
    report.add_argument("--run-id", required=True)
    report.set_defaults(handler=commands.render_report_command)

    export = subcommands.add_parser("export", help="export each model's chosen checkpoint of a run as a Hugging "
                                                   "Face model folder with a model card")
    export.add_argument("--dag-id", required=True, help="the tier's DAG, e.g. sweep_small")
    export.add_argument("--run-id", default="latest", help="a run id, or latest: the tier's latest successful run")
    export.add_argument("--model", action="append", help="a model to export (repeatable; default: every model)")
    export.add_argument("--to", default=None, help="parent folder or artifact-store URL (default: "
                                                   "$SWEEP_HOME/exports/<dag>/<run>, or the store's exports/)")
    export.set_defaults(handler=commands.export_command)

    prune = subcommands.add_parser("prune-checkpoints", help="remove the weights of the best checkpoints of each "
                                                             "DAG's older runs (rows, predictions and reports stay)")
    prune.add_argument("--keep-runs", type=positive_int, required=True,
                       help="how many of each DAG's newest runs keep their checkpoints")
    prune.add_argument("--dag-id", default=None, help="one tier's DAG, e.g. sweep_large (default: every DAG)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.set_defaults(handler=commands.prune_checkpoints_command)

    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_grid_point_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    point = parser.add_argument_group("grid point", "one combination of the plan's grid, named as in the plan; "
                                                    "the results DB is $SWEEP_DATABASE_URL if set")
    point.add_argument("--tier", default=None, help="the model's tier, checked against the plan (optional)")
    point.add_argument("--model", required=required, help="hub id as in the plan, e.g. Salesforce/codet5-base")
    point.add_argument("--learning-rate", type=float, required=required)
    point.add_argument("--batch-size", type=int, required=required)
    point.add_argument("--epochs", type=int, required=required)
    point.add_argument("--weight-decay", type=float, required=required)
    point.add_argument("--gradient-accumulation-steps", type=int, default=None,
                       help="default: the tier's (1 for small and medium, 2 for large)")
    point.add_argument("--budget", default="full", help="a budget of the plan (default: full)")
    point.add_argument("--dataset", default=None, help="hub id or local folder (default: the plan's)")
    point.add_argument("--max-steps", type=int, default=None, help="a step cap for smoke runs")
    point.add_argument("--seed", type=int, default=None, help="default: the plan's")
    point.add_argument("--plan", default=None, help="plan file (default: $SWEEP_PLAN_FILE, else the packaged plan)")
    point.add_argument("--dag-id", default="", help="group the result with a DAG's runs (default: cli)")
    point.add_argument("--run-id", default="", help="default: adhoc")


if __name__ == "__main__":
    sys.exit(main())
