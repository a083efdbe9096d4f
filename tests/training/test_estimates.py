"""The GPU-hour estimate before a tier run, from history in a real Postgres: each basis in turn
(the same configuration, the same model, other models by parameter count, nothing), the budget
gate's refusal naming the estimate, and the rows the report reads back."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from training.parameters import RunParameters
from training.plan import load_plan
from training.results import store
from training.results.estimates import BudgetExceeded, estimate_tier, gate
from training.results.history import record_estimate, run_estimate
from training.results.record import ExperimentResult, StopReason

CODEBERT, CODET5 = "microsoft/codebert-base", "Salesforce/codet5-small"
DATA = "/data/clones"


def finished(model_id: str, key: str, *, lr=2e-5, batch=16, epochs=3, wall=36.0, seen=900, planned=1200,
             device="cpu (x86_64)", reason=StopReason.EARLY_STOPPED, parameters=1_000_000) -> ExperimentResult:
    return ExperimentResult(
        dag_id="sweep_small", run_id="earlier", run_type="manual", experiment_key=key, tier="small",
        model_id=model_id, model_source="stand-in", is_stand_in=True, learning_rate=lr, batch_size=batch,
        num_epochs=epochs, weight_decay=0.01, gradient_accumulation_steps=1, budget="demo", dataset_source=DATA,
        stop_reason=reason, validation_f1=0.7, wall_seconds=wall, gpu_hours=0.0, gpu_count=0, device=device,
        samples_seen=seen, samples_planned=planned, train_rows=960 if planned else None,
        parameter_count=parameters, finished_at="2026-11-30T01:00:00+00:00")


def record(url: str, *results: ExperimentResult) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for result in results:
            store.upsert_experiment(connection, result)
    engine.dispose()


def small_estimate(url, models=(CODEBERT,), cap=None, sources=None, confirm_seeds=0):
    plan = load_plan()
    plan = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, confirm_seeds=confirm_seeds))
    run = RunParameters(budget="demo", dataset=DATA, models=models, max_gpu_hours=cap)
    return estimate_tier(url, plan, plan.tiers["small"], run, sources or {})


def gated(estimate, cap):
    gate(dataclasses.replace(estimate, max_gpu_hours=cap))


def test_each_grid_point_is_priced_from_the_closest_history(fresh_database):
    # 960 rows at batch 16 and 3 epochs plan 60 steps x 16 = 960 x 3 samples.
    same = finished(CODEBERT, "a", planned=2880, seen=1440, wall=36.0)
    record(fresh_database, same, finished(CODEBERT, "b", lr=5e-5, batch=32, epochs=5, planned=4800, seen=4800,
                                          wall=72.0, reason=StopReason.COMPLETED))
    estimate = small_estimate(fresh_database)
    by_point = {(e.hyperparameters.learning_rate, e.hyperparameters.batch_size, e.hyperparameters.num_epochs): e
                for e in estimate.estimates}
    exact = by_point[(2e-5, 16, 3)]
    assert exact.basis == "same configuration: its last 1 run(s)" and exact.hours == pytest.approx(36 / 3600)
    assert (exact.low, exact.high) == (pytest.approx(0.85 * 36 / 3600), pytest.approx(1.15 * 36 / 3600))
    # Another point at batch 16: that batch's cost per sample (36 s / 1440), x the share of planned
    # samples the model's runs trained (median of 0.5 and 1.0).
    other = by_point[(5e-5, 16, 5)]
    assert other.planned_samples == 4800 and other.basis.startswith("same model: cost per sample")
    assert other.hours == pytest.approx(4800 * (36 / 1440 / 3600) * 0.75)
    assert estimate.unit == "CPU-hour" and estimate.device == "cpu (x86_64)" and not estimate.unpriced
    assert "estimated cost of this small tier run" in estimate.breakdown()


def test_a_model_without_history_is_scaled_by_parameter_count(fresh_database, model_root):
    from training.engine.models import local_parameter_count

    record(fresh_database, finished(CODEBERT, "a", planned=2880, seen=2880, wall=36.0, parameters=1_000_000))
    source = str(model_root / CODET5)
    parameters = local_parameter_count(source)
    assert parameters and parameters > 10_000  # read from the safetensors header, no weights loaded
    estimate = small_estimate(fresh_database, models=(CODET5,), sources={CODET5: source})
    point = estimate.estimates[0]
    assert point.basis.startswith("parameter count: ") and point.low == pytest.approx(point.hours / 2)
    per_sample_parameter = 36 / 3600 / (2880 * 1_000_000)
    assert point.hours == pytest.approx(point.planned_samples * per_sample_parameter * parameters)


def test_without_history_nothing_is_priced_and_a_gate_refuses(fresh_database):
    estimate = small_estimate(fresh_database, confirm_seeds=2)
    assert len(estimate.unpriced) == 9 and estimate.why_unpriced  # 8 grid points and the seed reruns
    gated(estimate, None)  # no gate: the run goes ahead
    with pytest.raises(BudgetExceeded, match="cannot be priced, so the budget cannot be checked"):
        gated(estimate, 100.0)
    assert small_estimate(None).why_unpriced == "there is no results database to learn from"


def test_the_gate_names_the_estimate_and_the_report_reads_it_back(fresh_database):
    record(fresh_database, *[finished(CODEBERT, f"k{i}", lr=lr, batch=batch, epochs=epochs, planned=None,
                                      seen=None, wall=36.0)
                             for i, (lr, batch, epochs) in enumerate(
                                 [(lr, b, e) for lr in (2e-5, 5e-5) for b in (16, 32) for e in (3, 5)])])
    estimate = small_estimate(fresh_database)
    assert estimate.total() == pytest.approx(8 * 36 / 3600)  # every point priced by its own last run
    with pytest.raises(BudgetExceeded) as refused:
        gated(estimate, 0.01)
    assert "estimated 0.0800 CPU-hours" in str(refused.value) and "above max_gpu_hours = 0.01" in str(refused.value)
    assert f"{CODEBERT}: 0.0800" in str(refused.value)
    gated(estimate, 1.0)  # within the budget
    record_estimate(fresh_database, "sweep_small", "now", estimate)
    record_estimate(fresh_database, "sweep_small", "now", estimate)  # a retried first task replaces its rows
    rows = run_estimate(fresh_database, "sweep_small", "now")
    assert len(rows) == 8 and sum(r["hours"] for r in rows) == pytest.approx(0.08)
    with sa.create_engine(fresh_database).connect() as connection:
        view = connection.execute(sa.text("SELECT * FROM analytics.gpu_hour_estimate_vs_actual")).mappings().one()
    assert view["estimated_hours"] == pytest.approx(0.08) and view["actual_hours"] is None  # nothing ran yet
