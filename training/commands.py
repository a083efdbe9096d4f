"""The CLI's commands besides running an experiment (python -m training <command>): checking a
dataset or a plan, making the offline dataset and stand-ins, the results database's chores, and
rendering a report. Each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import sys
from pathlib import Path

from training.settings import setting


def check_data_command(args) -> int:
    """The run's own checks on a dataset, before anyone triggers: what was found, or every problem."""
    import dataclasses

    from training.data.contract import SPLITS, leakage_counts
    from training.data.loading import load_dataset
    from training.plan import load_plan

    plan_dataset = load_plan(args.plan).dataset
    dataset = load_dataset(dataclasses.replace(plan_dataset, source=args.source))
    spec, labels = dataset.spec, dataset.labels
    print(f"dataset {spec.source}: valid (fingerprint {dataset.fingerprint})")
    shape = "pairs" if len(spec.text_columns) == 2 else "single snippets"
    print(f"  text columns: {', '.join(spec.text_columns)} ({shape}); "
          f"label column: {spec.label_column}")
    for split in SPLITS:
        counts = dataset.splits[split].to_pandas()[spec.label_column].value_counts()
        print(f"  {split}: {len(dataset.splits[split])} rows; "
              + ", ".join(f"{value!r}: {counts.get(value, 0)}" for value in labels.values))
    if labels.positive is None:
        print(f"  {len(labels.values)} classes {labels.values}: F1 is macro-averaged")
    else:
        print(f"  labels {labels.values}; F1 is measured for the positive label {labels.positive!r}")
    leaks = leakage_counts(dataset.splits, spec.text_columns)
    print(f"  leakage, counted against all {len(dataset.splits['train'])} train rows (a run's report counts "
          "against the rows its budget keeps, so its figures can be lower):")
    for split in ("validation", "test"):
        rows, count = len(dataset.splits[split]), leaks[f"{split}_duplicates_of_train"]
        print(f"  {split}: {count} rows ({count / rows:.1%}) repeat a train row (whitespace ignored)"
              + ("  <- held-out scores will be optimistic" if count else ""))
        if len(spec.text_columns) > 1:
            every = leaks[f"{split}_rows_all_texts_in_train"]
            sharing = leaks[f"{split}_rows_sharing_train_text"]
            print(f"  {split}: {every} rows ({every / rows:.1%}) have every text in train, if not as this pair "
                  "(near-copies)")
            print(f"  {split}: {sharing} rows ({sharing / rows:.1%}) share a function text with a train row")
    return 0


def check_plan_command(args) -> int:
    from training.plan import load_plan

    plan = load_plan(args.file)
    runs = {name: len(tier.models) * len(tier.combinations()) for name, tier in sorted(plan.tiers.items())}
    print(f"plan {plan.path}: valid (version {plan.version})")
    for name, tier in sorted(plan.tiers.items()):
        print(f"  {name}: {', '.join(tier.models)}; {runs[name]} runs; priority {tier.priority}; "
              f"schedule {tier.schedule or 'triggered only'}")
    print(f"  {sum(runs.values())} runs in all; budgets: {', '.join(sorted(plan.budgets))}; "
          f"dataset {plan.dataset.source}")
    return 0


def make_dataset_command(args) -> int:
    from training.offline import pairs, synthetic

    if args.kind == "clones":
        counts = pairs.generate(Path(args.out), max_pairs=args.max_examples, seed=args.seed)
    else:
        counts = synthetic.generate(Path(args.out), max_examples=args.max_examples, seed=args.seed)
    print(f"wrote {counts} to {args.out}")
    return 0


def build_standins_command(args) -> int:
    from training.offline.standins import build_stand_ins
    from training.plan import load_plan

    models = args.models.split(",") if args.models else None
    for folder in build_stand_ins(load_plan(args.plan), Path(args.data), Path(args.out), args.max_length,
                                  model_ids=models, full_size=args.full_size, pretrain_steps=args.pretrain_steps,
                                  pretrain_seconds=args.pretrain_seconds):
        print(folder)
    return 0


def db_command(args) -> int:
    from training.results import database
    from training.settings import SettingsError, Storage, database_url

    if args.action == "stop":
        print("stopped" if database.stop_embedded_server() else "not running")
    elif args.action == "up":
        results_url, airflow_url = database.provision()
        print(f"SWEEP_DATABASE_URL={results_url}")
        print(f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={airflow_url}")
    elif args.action == "migrate":
        applied = database.migrate(database_url("db migrate"))
        print(f"results DB migrated: {', '.join(applied) or 'already up to date'}")
    elif args.action == "sync":
        from training.artifacts import ArtifactStore
        from training.engine.uploads import send_outboxes
        from training.results.store import sync_result_files

        storage = Storage.from_environment()
        root = Path(args.root) if args.root else Path(storage.experiments_dir)
        if ArtifactStore.of(storage).shared:
            sent = send_outboxes(ArtifactStore.of(storage), root)
            print(f"artifact store: sent what {sent['sent']} experiment(s) had left; "
                  f"{sent['still missing']} still wait")
        counts = sync_result_files(database_url("db sync"), root, warn=lambda line: print(line, file=sys.stderr))
        print(f"loaded {counts['loaded']} result files the database lacked; {counts['present']} were already there")
        if counts["unreadable"]:
            print(f"error: {counts['unreadable']} result file(s) could not be read (named above); nothing else "
                  "was skipped", file=sys.stderr)
            return 1
    elif args.action == "add-user":
        if not args.name or args.role not in ("writer", "analyst"):
            raise SystemExit("db add-user needs --name and --role writer|analyst")
        password = setting("SWEEP_USER_PASSWORD")
        if not password and not args.no_password:
            raise SettingsError("db add-user: SWEEP_USER_PASSWORD is empty; set it, or pass --no-password for a "
                                "login that only a trusted local socket accepts")
        database.add_login(database_url("db add-user"), args.name, args.role, password or None)
        print(f"login {args.name} can now connect as a sweep {args.role}")
    return 0


def render_report_command(args) -> int:
    from training.report.render import render_run_report
    from training.settings import Storage, database_url

    out_dir = Storage.from_environment().report_dir(args.dag_id, args.run_id)
    print(render_run_report(database_url("render-report"), args.dag_id, args.run_id, out_dir))
    return 0


def export_command(args) -> int:
    """Export the chosen checkpoints of a run (or of the tier's latest successful run), then render
    its report again so the report shows the exported models and their deployment figures."""
    from training.export.choose import latest_successful_run
    from training.export.package import export_run
    from training.report.published import publish
    from training.report.render import render_again
    from training.settings import Storage, database_url

    url = database_url("export")
    run_id = latest_successful_run(url, args.dag_id) if args.run_id in (None, "latest") else args.run_id
    export_run(url, args.dag_id, run_id, args.model or None, args.to)
    storage = Storage.from_environment()
    html = render_again(url, args.dag_id, run_id, storage.report_dir(args.dag_id, run_id))
    publish(storage, html.parent)  # to the artifact store, where the report server reads it (if one is set)
    print(f"report: {html}")
    return 0


def prune_checkpoints_command(args) -> int:
    from training.results.retention import prune_here
    from training.settings import database_url

    prune_here(database_url("prune-checkpoints"), args.keep_runs, args.dag_id, args.dry_run)
    return 0
