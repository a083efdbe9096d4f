"""The small tier through Airflow (`airflow dags test`, the demo's path) against a real Postgres,
on stand-in models with the tiny budget, with one seed rerun of each model's chosen configuration
and successive halving on (a plan copy with confirm_seeds = 1 and the small tier's pruning): 16 grid
rows, some pruned, and 2 reruns for the run, and a report listing them; retention on (keep one run), so
an older recorded run loses its checkpoint weights and keeps its predictions. Then a second trigger with
a GPU-hour budget below the estimate, which the first task refuses before any training."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from devstack.local import airflow_env, latest_report, prepare_airflow, run_tier
from training.plan import DEFAULT_PLAN_PATH
from training.results import database

pytestmark = pytest.mark.slow  # runs whole DAGs


def older_run(url: str, folder):
    """A successful run of the tier from a week before, with a checkpoint folder of its own."""
    from tests.training.fixtures import result_record
    from training.results.record import ExperimentResult
    from training.results.store import finish_sweep_run, record_experiment

    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "test_predictions.parquet").write_bytes(b"rows")
    record_experiment(url, ExperimentResult.from_dict(result_record(
        run_id="scheduled__2026-11-29", checkpoint_path=str(folder), checkpoint_url=str(folder),
        started_at="2026-11-29T02:00:00+00:00", finished_at="2026-11-29T03:00:00+00:00")))
    assert finish_sweep_run(url, "sweep_small", "scheduled__2026-11-29", "small", "scheduled") == "success"
    return folder


def test_small_tier_runs_end_to_end(session_dir, postgres, fresh_database, dataset_dir, model_root):
    metadata_url = database.ensure_database(postgres, "airflow_e2e")
    reports = session_dir / "e2e-reports"
    plan = session_dir / "e2e-plan.toml"
    plan.write_text(DEFAULT_PLAN_PATH.read_text().replace("confirm_seeds = 0", "confirm_seeds = 1").replace(
        "[tiers.small]\n", '[tiers.small]\npruning = { method = "asha", reduction_factor = 3, min_fraction = 0.1, '
                            'rungs_of = "grid", noise_z = 0.0 }\n').replace(  # the rules that prune on 8 steps
        "keep_checkpoints_of_runs = 0", "keep_checkpoints_of_runs = 1"))
    older = older_run(fresh_database, session_dir / "e2e-older" / "best")
    assert "\nconfirm_seeds = 1" in plan.read_text() and '\npruning = { method = "asha"' in plan.read_text()
    # The pipeline writes as a login of the writer role, as `make demo` sets it up.
    env = airflow_env(session_dir / "e2e", database.pipeline_url(fresh_database), database.airflow_url(metadata_url),
                      SWEEP_MODEL_ROOT=str(model_root), SWEEP_REPORTS_DIR=str(reports), SWEEP_PLAN_FILE=str(plan))
    prepare_airflow(env)
    run_tier("small", json.dumps({"budget": "tiny", "dataset": str(dataset_dir)}), env,
             session_dir / "e2e" / "dags-test.log")

    with sa.create_engine(fresh_database).connect() as connection:
        every_row = connection.execute(sa.text(
            "SELECT * FROM experiments WHERE run_id <> 'scheduled__2026-11-29'")).mappings().all()  # not older_run's
    rows = [row for row in every_row if row["confirmation_of"] is None]
    reruns = [row for row in every_row if row["confirmation_of"] is not None]
    assert len(rows) == 16 and len(reruns) == 2
    chosen = {row["model_id"]: row for row in
              sorted(rows, key=lambda r: (r["validation_f1"], r["stop_reason"] != "pruned", -r["num_epochs"],
                                       -r["gpu_hours"], -r["wall_seconds"]))}
    for rerun in reruns:  # the chosen configuration of its model, with the next seed
        best = chosen[rerun["model_id"]]
        assert (rerun["confirmation_of"], rerun["seed"], best["seed"]) == (best["experiment_key"], 43, 42)
        assert rerun["learning_rate"] == best["learning_rate"] and rerun["batch_size"] == best["batch_size"]
        assert rerun["stop_reason"] in ("completed", "early_stopped") and rerun["predictions_path"]  # never pruned
    assert {row["dag_id"] for row in rows} == {"sweep_small"}
    assert len({row["run_id"] for row in rows}) == 1
    assert {row["model_id"] for row in rows} == {"microsoft/codebert-base", "Salesforce/codet5-small"}
    assert len({(r["model_id"], r["learning_rate"], r["batch_size"], r["num_epochs"]) for r in rows}) == 16
    assert all(row["stop_reason"] in ("completed", "early_stopped", "pruned") for row in rows)
    # Successive halving: the first reduction_factor (3) runs of each model never have enough peers
    # to be pruned; later ones that stand below the top third at a rung are.
    pruned = [row for row in rows if row["stop_reason"] == "pruned"]
    assert pruned, [(r["model_id"], r["stop_reason"], r["validation_f1"]) for r in rows]
    for model_id in {row["model_id"] for row in rows}:
        in_order = sorted((r for r in rows if r["model_id"] == model_id), key=lambda r: r["started_at"])
        assert all(r["stop_reason"] != "pruned" for r in in_order[:3])
    for row in pruned:
        assert row["pruning_peers"] >= 3 and row["samples_seen"] < row["samples_planned"]
        assert row["pruning_f1"] <= row["pruning_threshold_f1"] and row["test_f1"] is not None
    assert all(row["test_f1"] is not None and row["is_stand_in"] for row in rows)
    assert all(row["run_type"] == "manual" for row in rows)

    report = latest_report(reports, "sweep_small")
    assert report is not None and report.parent.name.startswith("manual__")
    markdown = report.with_suffix(".md").read_text()
    assert "18 experiments, 0 failed" in markdown
    assert markdown.count("| early_stopped |") + markdown.count("| completed |") + markdown.count("| pruned |") == 16
    assert f"{len(pruned)} run(s) stopped behind their peers" in markdown and "Pruned by successive halving" in markdown
    assert "Estimate before the run" in markdown and "unpriced" in markdown  # a first run: no history to price it
    assert markdown.count("(seed 43) |") == 2 and markdown.count("training seeds (42, 43)") == 2
    assert "**Verdict: " in markdown  # the two models, compared on the same test rows
    assert "Stand-in models" in markdown
    assert "## Exported models" in markdown  # the export task rendered the report again with its models

    # Each mapped instance carries its hyperparameters as its name in the UI.
    with sa.create_engine(metadata_url).connect() as connection:
        names = connection.execute(sa.text(
            "SELECT task_id, rendered_map_index, state FROM task_instance WHERE dag_id = 'sweep_small' "
            "AND map_index >= 0")).all()
    assert len(names) == 18 and all(state == "success" for _, _, state in names)
    with sa.create_engine(metadata_url).connect() as connection:
        final = connection.execute(sa.text("SELECT task_id, state FROM task_instance WHERE dag_id = 'sweep_small' "
                                           "AND map_index < 0 ORDER BY task_id")).all()
    assert [tuple(row) for row in final] == [("Salesforce_codet5-small.choose_seed_reruns", "success"),
                                             ("export", "success"),
                                             ("microsoft_codebert-base.choose_seed_reruns", "success"),
                                             ("prune_checkpoints", "success"), ("report", "success"),
                                             ("start", "success"), ("verify", "success")]
    # Retention, as the pipeline's writer role: the older run's weights went, its predictions stayed.
    assert sorted(p.name for p in older.iterdir()) == ["test_predictions.parquet"]
    with sa.create_engine(fresh_database).begin() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM checkpoint_removals")).scalar() == 1
        connection.execute(sa.text("DELETE FROM sweep_runs WHERE run_id = 'scheduled__2026-11-29'"))  # counts below
    assert ("microsoft_codebert-base.train", "lr=5e-05 bs=32 ep=5 wd=0.01", "success") in names
    best = chosen["microsoft/codebert-base"]
    assert ("microsoft_codebert-base.confirm", f"seed=43 lr={best['learning_rate']} bs={best['batch_size']} "
            f"ep={best['num_epochs']} wd={best['weight_decay']}", "success") in names

    # The run fills every table of the warehouse, and the analysts' views show it.
    with sa.create_engine(fresh_database).connect() as connection:
        def count(sql):
            return connection.execute(sa.text(sql)).scalar()

        assert count("SELECT count(*) FROM sweep_runs WHERE status = 'success' AND finished_at IS NOT NULL") == 1
        assert count("SELECT count(*) FROM attempts") == 18
        assert count("SELECT count(DISTINCT experiment_id) FROM evaluation_points") == 18
        assert count("SELECT experiments FROM analytics.tier_summary") == 18
        assert count("SELECT count(*) FROM analytics.best_configuration_per_model") == 2
        assert count("SELECT count(*) FROM analytics.experiment_leaderboard") == 18
        assert count("SELECT count(*) FROM analytics.seed_confirmations WHERE seeds = 2") == 2
        assert count("SELECT count(*) FROM analytics.resource_usage") == 2
        assert count("SELECT count(DISTINCT model_id) FROM analytics.hyperparameter_effects") == 2
        assert count("SELECT count(*) FROM analytics.f1_trend_across_runs") == 2
        assert count("SELECT count(*) FROM analytics.pruned_experiments") == len(pruned)
        assert count("SELECT count(*) FROM gpu_hour_estimates") == 18  # 16 grid points, a rerun row per model
        assert count("SELECT count(*) FROM exports WHERE verified_rows > 0") == 2  # each winner, checked
        run_id = rows[0]["run_id"]

    # A second trigger, with a budget below what the first run cost: refused at the first task,
    # naming the estimate, and no training task starts.
    gate_log = session_dir / "e2e" / "dags-test-gate.log"
    try:
        run_tier("small", json.dumps({"budget": "tiny", "dataset": str(dataset_dir), "max_gpu_hours": 1e-6}), env,
                 gate_log)
    except RuntimeError:
        pass  # `dags test` of a failed run exits non-zero; the states below are what counts
    log = gate_log.read_text()
    assert "budget gate: estimated" in log and "above max_gpu_hours = 1e-06" in log, log[-3000:]
    assert "same configuration: its last 1 run(s)" in log  # priced from the first run
    with sa.create_engine(metadata_url).connect() as connection:
        states = dict(connection.execute(sa.text(
            "SELECT task_id || ':' || map_index, state FROM task_instance WHERE dag_id = 'sweep_small' "
            "AND run_id <> :first"), {"first": run_id}).all())
    assert states["start:-1"] == "failed"
    assert not any(state in ("success", "running", "failed") for name, state in states.items()
                   if ".train" in name or ".confirm" in name), states
    with sa.create_engine(fresh_database).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM experiments WHERE run_id <> :first"),
                                  {"first": run_id}).scalar() == 0
    refused = latest_report(reports, "sweep_small").with_suffix(".md").read_text()
    assert "**Refused by the budget gate.** The estimate" in refused and "0 experiments" in refused
