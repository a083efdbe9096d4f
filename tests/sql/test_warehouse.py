"""The analysts' warehouse on a real Postgres: tables filled from result records, every view and
every documented query on fixture data with hand-computed answers, and the analyst role."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.training.fixtures import CODEBERT, CODET5, LATEST_RUN, PREVIOUS_RUN, result_record, warehouse_records
from training.results.record import ExperimentResult
from training.results.store import finish_sweep_run, record_experiment

QUERIES = Path(__file__).resolve().parents[2] / "sql" / "queries"


@pytest.fixture
def warehouse(fresh_database):
    for record in warehouse_records():
        record_experiment(fresh_database, ExperimentResult.from_dict(record))
    for run_id in (PREVIOUS_RUN, LATEST_RUN):
        finish_sweep_run(fresh_database, "sweep_small", run_id, "small", "scheduled")
    engine = sa.create_engine(fresh_database)
    yield engine
    engine.dispose()


def rows(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.text(sql), params).mappings()]


def run_query(engine, name: str) -> list[dict]:
    return rows(engine, (QUERIES / name).read_text())


def test_tables_hold_runs_attempts_and_learning_curves(warehouse):
    runs = rows(warehouse, "SELECT run_id, status, run_type FROM sweep_runs ORDER BY started_at")
    assert runs == [{"run_id": PREVIOUS_RUN, "status": "success", "run_type": "scheduled"},
                    {"run_id": LATEST_RUN, "status": "failed", "run_type": "scheduled"}]  # one experiment failed
    retried = rows(warehouse, "SELECT a.attempt_number, a.outcome, a.gpu_seconds, a.resumed_from_step "
                              "FROM attempts a JOIN experiments e USING (experiment_id) "
                              "WHERE e.run_id = :run AND e.model_id = :model AND e.learning_rate = 2e-5 "
                              "ORDER BY a.attempt_number", run=LATEST_RUN, model=CODEBERT)
    assert retried == [
        {"attempt_number": 1, "outcome": "interrupted", "gpu_seconds": 100.0, "resumed_from_step": None},
        {"attempt_number": 2, "outcome": "early_stopped", "gpu_seconds": 188.0, "resumed_from_step": 100}]
    assert rows(warehouse, "SELECT count(*) AS n FROM experiments") == [{"n": 7}]
    assert rows(warehouse, "SELECT count(*) AS n FROM evaluation_points") == [{"n": 12}]  # 6 finished x 2 points


def test_a_retried_experiment_leaves_one_row_and_its_attempts(warehouse, fresh_database):
    retried = warehouse_records()[3]
    record_experiment(fresh_database, ExperimentResult.from_dict(retried))  # the task ran again and recorded again
    assert rows(warehouse, "SELECT count(*) AS n FROM experiments WHERE run_id = :r AND model_id = :m "
                           "AND learning_rate = 2e-5", r=LATEST_RUN, m=CODEBERT) == [{"n": 1}]
    assert rows(warehouse, "SELECT count(*) AS n FROM attempts a JOIN experiments e USING (experiment_id) "
                           "WHERE e.run_id = :r AND e.model_id = :m AND e.learning_rate = 2e-5",
                r=LATEST_RUN, m=CODEBERT) == [{"n": 2}]


def test_leaderboard_ranks_by_validation_f1(warehouse):
    board = rows(warehouse, "SELECT model_id, learning_rate, rank_in_run, rank_in_model "
                            "FROM analytics.experiment_leaderboard WHERE run_id = :r ORDER BY rank_in_run",
                 r=LATEST_RUN)
    assert [(b["model_id"], b["learning_rate"], b["rank_in_run"]) for b in board] == [
        (CODEBERT, 2e-5, 1), (CODEBERT, 5e-5, 2), (CODET5, 5e-5, 3), (CODET5, 2e-5, 4)]  # failed last


def test_tier_summary_and_trend(warehouse):
    summary = rows(warehouse, "SELECT experiments, failed, early_stopped, best_model_id, best_validation_f1, "
                              "test_f1_of_best, gpu_hours FROM analytics.tier_summary WHERE run_id = :r", r=LATEST_RUN)
    # the test F1 of the experiment validation chose, not the highest test F1 of the run
    assert summary == [{"experiments": 4, "failed": 1, "early_stopped": 2, "best_model_id": CODEBERT,
                        "best_validation_f1": 0.85, "test_f1_of_best": 0.86, "gpu_hours": pytest.approx(0.28)}]
    trend = rows(warehouse, "SELECT model_id, test_f1_change FROM analytics.f1_trend_across_runs "
                            "WHERE run_id = :r ORDER BY model_id", r=LATEST_RUN)
    assert [(t["model_id"], round(t["test_f1_change"], 4)) for t in trend] == [(CODET5, 0.05), (CODEBERT, 0.04)]


def test_resource_usage_prices_early_stopping(warehouse):
    usage = rows(warehouse, "SELECT gpu_hours, gpu_hours_saved_by_early_stopping AS saved, "
                            "early_stopping_saved_share AS share FROM analytics.resource_usage "
                            "WHERE run_id = :r AND model_id = :m", r=LATEST_RUN, m=CODEBERT)
    # 0.08 GPU-hours for 300 of 600 steps: 0.08 saved; 0.15 for the completed one
    assert usage == [{"gpu_hours": pytest.approx(0.23), "saved": pytest.approx(0.08),
                      "share": pytest.approx(0.08 / 0.31)}]


def test_every_documented_query_answers_its_question(warehouse):
    best = run_query(warehouse, "best_configuration_latest_run.sql")
    assert [(b["model_id"], float(b["learning_rate"]), float(b["test_f1"])) for b in best] == [
        (CODEBERT, 2e-5, 0.86), (CODET5, 5e-5, 0.74)]
    usage = run_query(warehouse, "gpu_hours_by_model_latest_run.sql")
    assert [(u["model_id"], float(u["gpu_hours"]), float(u["gpu_hours_saved"])) for u in usage] == [
        (CODEBERT, 0.23, 0.08), (CODET5, 0.05, 0.02)]  # 0.04 for 400 of 600 steps: 0.02 saved
    changes = run_query(warehouse, "f1_changes_since_previous_run.sql")
    assert [(c["model_id"], float(c["test_f1_change"]), c["previous_run_id"]) for c in changes] == [
        (CODET5, 0.05, PREVIOUS_RUN), (CODEBERT, 0.04, PREVIOUS_RUN)]
    failed = run_query(warehouse, "failed_experiments.sql")
    assert [(f["model_id"], f["stop_reason"], f["error"]) for f in failed] == [(CODET5, "failed", "RuntimeError: boom")]
    rates = run_query(warehouse, "learning_rate_effect.sql")
    # by validation F1: codebert 2e-5 -> (0.80 + 0.85) / 2 = 0.825, 5e-5 -> (0.84 + 0.83) / 2 = 0.835
    assert [(r["model_id"], float(r["learning_rate"]), float(r["mean_validation_f1"])) for r in rates] == [
        (CODET5, 5e-5, 0.75), (CODEBERT, 5e-5, 0.835)]
    assert len(list(QUERIES.glob("*.sql"))) == 5  # a new query needs its own check here


def test_runs_on_other_data_or_budgets_are_never_compared_or_pooled(warehouse, fresh_database):
    """A run on another dataset, a run on another budget and a stand-in run: each starts a series of
    its own in the trend, and the effects of hyperparameters are never pooled across them."""
    others = {"devign": {"dataset_fingerprint": "devign"}, "demo": {"budget": "demo"},
              "standin": {"is_stand_in": True}, "capped": {"run_settings": {"max_steps": 40, "seed": 42}}}
    for day, (name, change) in enumerate(others.items(), start=26):
        record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
            CODEBERT, run_id=name, validation_f1=0.5, test_f1=0.4, started_at=f"2026-11-{day}T02:00:00+00:00",
            **change)))
        finish_sweep_run(fresh_database, "sweep_small", name, "small", "manual")
    trend = rows(warehouse, "SELECT run_id, previous_run_id FROM analytics.f1_trend_across_runs "
                            "WHERE model_id = :m ORDER BY run_started_at", m=CODEBERT)
    assert trend == [{"run_id": PREVIOUS_RUN, "previous_run_id": None},
                     {"run_id": LATEST_RUN, "previous_run_id": PREVIOUS_RUN},
                     {"run_id": "devign", "previous_run_id": None}, {"run_id": "demo", "previous_run_id": None},
                     {"run_id": "standin", "previous_run_id": None},
                     {"run_id": "capped", "previous_run_id": None}]  # a step-capped run is not the nightly's next
    changes = run_query(warehouse, "f1_changes_since_previous_run.sql")
    assert {c["run_id"] for c in changes} == {LATEST_RUN}
    effects = rows(warehouse, "SELECT dataset_fingerprint, budget, is_stand_in, experiments, mean_validation_f1 "
                              "FROM analytics.hyperparameter_effects WHERE model_id = :m AND hyperparameter = "
                              "'num_epochs' ORDER BY experiments DESC, dataset_fingerprint, budget, is_stand_in",
                   m=CODEBERT)
    assert effects == [
        {"dataset_fingerprint": "abc", "budget": "full", "is_stand_in": False, "experiments": 4,
         "mean_validation_f1": pytest.approx(0.83)},
        {"dataset_fingerprint": "abc", "budget": "demo", "is_stand_in": False, "experiments": 1,
         "mean_validation_f1": 0.5},
        {"dataset_fingerprint": "abc", "budget": "full", "is_stand_in": False, "experiments": 1,  # capped
         "mean_validation_f1": 0.5},
        {"dataset_fingerprint": "abc", "budget": "full", "is_stand_in": True, "experiments": 1,
         "mean_validation_f1": 0.5},
        {"dataset_fingerprint": "devign", "budget": "full", "is_stand_in": False, "experiments": 1,
         "mean_validation_f1": 0.5}]


def test_seed_reruns_are_summarised_and_never_chosen(warehouse, fresh_database):
    """Reruns of the chosen configuration with other seeds: in the seed view with mean and sd, never
    the chosen configuration themselves, even with a higher validation F1."""
    chosen = next(r for r in warehouse_records() if r["run_id"] == LATEST_RUN and r["model_id"] == CODEBERT
                  and r["learning_rate"] == 2e-5)
    for seed, f1 in ((43, 0.87), (44, 0.83)):
        record_experiment(fresh_database, ExperimentResult.from_dict({
            **chosen, "experiment_key": f"{chosen['experiment_key']}-seed{seed}", "seed": seed, "attempts": [],
            "confirmation_of": chosen["experiment_key"], "validation_f1": f1, "test_f1": f1 - 0.01}))
    best = rows(warehouse, "SELECT experiment_key, validation_f1 FROM analytics.best_configuration_per_model "
                           "WHERE run_id = :r AND model_id = :m", r=LATEST_RUN, m=CODEBERT)
    assert best == [{"experiment_key": chosen["experiment_key"], "validation_f1": 0.85}]
    seeds = rows(warehouse, "SELECT seeds, mean_validation_f1, sd_validation_f1, mean_test_f1 "
                            "FROM analytics.seed_confirmations WHERE model_id = :m", m=CODEBERT)
    assert seeds == [{"seeds": 3, "mean_validation_f1": pytest.approx(0.85), "sd_validation_f1": pytest.approx(0.02),
                      "mean_test_f1": pytest.approx((0.86 + 0.86 + 0.82) / 3)}]


@pytest.mark.parametrize("statement", [
    "INSERT INTO sweep_runs (dag_id, run_id, tier, run_type) VALUES ('d', 'r', 'small', 'manual')",
    "UPDATE experiments SET test_f1 = 1",
    "DELETE FROM evaluation_points",
    "INSERT INTO checkpoint_removals (experiment_id, checkpoint_path, keep_runs) SELECT experiment_id, 'x', 1 "
    "FROM experiments LIMIT 1",
    "CREATE TABLE mine (x int)",
    "CREATE VIEW analytics.mine AS SELECT 1",
    "DROP VIEW analytics.tier_summary",
])
def test_the_analyst_role_reads_and_changes_nothing(warehouse, statement):
    with warehouse.connect() as connection:
        connection.execute(sa.text("SET ROLE sweep_analyst"))
        assert connection.execute(sa.text("SELECT count(*) FROM analytics.experiment_leaderboard")).scalar() == 7
        assert connection.execute(sa.text("SELECT count(*) FROM attempts")).scalar() == 8
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            connection.execute(sa.text(statement))
