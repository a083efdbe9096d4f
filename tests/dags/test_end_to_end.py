"""The small tier through Airflow (`airflow dags test`, the demo's path) against a real Postgres,
on stand-in models with the tiny budget, and with one seed rerun of each model's chosen
configuration (a plan copy with confirm_seeds = 1): 16 grid rows and 2 reruns for the run, and a
report listing them."""

from __future__ import annotations

import json

import sqlalchemy as sa

from devstack.local import airflow_env, latest_report, prepare_airflow, run_tier
from training.plan import DEFAULT_PLAN_PATH
from training.results import database


def test_small_tier_runs_end_to_end(session_dir, postgres, fresh_database, dataset_dir, model_root):
    metadata_url = database.ensure_database(postgres, "airflow_e2e")
    reports = session_dir / "e2e-reports"
    plan = session_dir / "e2e-plan.toml"
    plan.write_text(DEFAULT_PLAN_PATH.read_text().replace("confirm_seeds = 0", "confirm_seeds = 1"))
    assert "\nconfirm_seeds = 1" in plan.read_text()
    # The pipeline writes as a login of the writer role, as `make demo` sets it up.
    env = airflow_env(session_dir / "e2e", database.pipeline_url(fresh_database), database.airflow_url(metadata_url),
                      SWEEP_MODEL_ROOT=str(model_root), SWEEP_REPORTS_DIR=str(reports), SWEEP_PLAN_FILE=str(plan))
    prepare_airflow(env)
    run_tier("small", json.dumps({"budget": "tiny", "dataset": str(dataset_dir)}), env,
             session_dir / "e2e" / "dags-test.log")

    with sa.create_engine(fresh_database).connect() as connection:
        every_row = connection.execute(sa.text("SELECT * FROM experiments")).mappings().all()
    rows = [row for row in every_row if row["confirmation_of"] is None]
    reruns = [row for row in every_row if row["confirmation_of"] is not None]
    assert len(rows) == 16 and len(reruns) == 2
    chosen = {row["model_id"]: row for row in
              sorted(rows, key=lambda r: (r["validation_f1"], -r["gpu_hours"], -r["wall_seconds"]))}
    for rerun in reruns:  # the chosen configuration of its model, with the next seed
        best = chosen[rerun["model_id"]]
        assert (rerun["confirmation_of"], rerun["seed"], best["seed"]) == (best["experiment_key"], 43, 42)
        assert rerun["learning_rate"] == best["learning_rate"] and rerun["batch_size"] == best["batch_size"]
        assert rerun["stop_reason"] in ("completed", "early_stopped") and rerun["predictions_path"]
    assert {row["dag_id"] for row in rows} == {"sweep_small"}
    assert len({row["run_id"] for row in rows}) == 1
    assert {row["model_id"] for row in rows} == {"microsoft/codebert-base", "Salesforce/codet5-small"}
    assert len({(r["model_id"], r["learning_rate"], r["batch_size"], r["num_epochs"]) for r in rows}) == 16
    assert all(row["stop_reason"] in ("completed", "early_stopped") for row in rows)
    assert all(row["test_f1"] is not None and row["is_stand_in"] for row in rows)
    assert all(row["run_type"] == "manual" for row in rows)

    report = latest_report(reports, "sweep_small")
    assert report is not None and report.parent.name.startswith("manual__")
    markdown = report.with_suffix(".md").read_text()
    assert "18 experiments, 0 failed" in markdown
    assert markdown.count("| early_stopped |") + markdown.count("| completed |") == 16
    assert markdown.count("(seed 43) |") == 2 and markdown.count("training seeds (42, 43)") == 2
    assert "**Verdict: " in markdown  # the two models, compared on the same test rows
    assert "Stand-in models" in markdown

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
                                             ("microsoft_codebert-base.choose_seed_reruns", "success"),
                                             ("report", "success"), ("start", "success"), ("verify", "success")]
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
