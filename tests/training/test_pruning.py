"""Successive halving across a model's grid: the rung arithmetic, a run pruned against peers it
reads from a real Postgres (kept and tested like any other), a run with too few peers, and a run
whose results database is down: nothing pruned, nothing failed."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from tests.training.helpers import run_cli, spec_for
from training.engine.halving import standing
from training.plan import Pruning, load_plan, planned_samples
from training.results import store
from training.results.record import ExperimentResult
from training.spec import pruning_settings

MODEL = "microsoft/codebert-base"


def test_rungs_and_planned_samples():
    assert Pruning().rungs() == [0.1, 0.3, 0.9]
    assert Pruning(reduction_factor=2, min_fraction=0.2).rungs() == [0.2, 0.4, 0.8]
    assert planned_samples(100, 16, 1, 3, None) == 3 * 7 * 16  # 7 batches an epoch, the last one short
    assert planned_samples(100, 16, 2, 3, None) == 3 * 4 * 32  # 7 batches = 4 optimizer steps
    assert planned_samples(100, 16, 1, 3, 5) == 5 * 16  # a step cap replaces the epochs


def test_standing_is_the_best_so_far_at_the_first_evaluation_past_the_rung():
    points = [(32, 0.5, 0.7), (64, 0.8, 0.6), (96, 0.6, 0.5), (128, 0.9, 0.4)]
    assert standing(points, 60) == (0.8, -0.6)
    assert standing(points, 65) == (0.8, -0.6)  # the evaluation at 96 did not beat 0.8
    assert standing(points, 200) is None  # never reached
    # tied on F1, the lower validation loss stands higher
    assert standing([(32, 0.5, 0.3)], 10) > standing([(32, 0.5, 0.6)], 10)


def pruning_spec(dataset_dir, **hyperparameters):
    plan = load_plan()
    spec = spec_for(MODEL, dataset_dir, plan=plan, **hyperparameters)
    return dataclasses.replace(spec, pruning=pruning_settings(plan.tiers["small"], True))


def add_peers(url: str, spec, count: int, f1: float) -> None:
    """Peers of the same model in the same sweep run, recorded as LiveResults writes them: each
    evaluated every 2 steps at batch 16, at this F1 and a validation loss of 0."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for index in range(count):
            peer = ExperimentResult(
                dag_id=spec.dag_id, run_id=spec.run_id, run_type="manual", experiment_key=f"peer{index}",
                tier="small", model_id=spec.model_id, model_source="stand-in", is_stand_in=True,
                learning_rate=2e-5, batch_size=16, num_epochs=3 + index, weight_decay=0.01,
                gradient_accumulation_steps=1, budget=spec.budget, dataset_source=spec.dataset.source)
            experiment_id = store.upsert_experiment(connection, peer, status="running")
            for step in (2, 4, 6, 8):
                connection.execute(store.INSERT_POINT, {"experiment_id": experiment_id, "step": step, "epoch": None,
                                                        "loss": 0.0, "f1": f1, "elapsed_seconds": None})
    engine.dispose()


def test_a_run_behind_its_peers_at_a_rung_is_pruned_and_still_tested(tmp_path, dataset_dir, model_root,
                                                                       fresh_database):
    spec = pruning_spec(dataset_dir)  # batch 8: 8 samples a step
    add_peers(fresh_database, spec, 3, f1=1.0)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                     "SWEEP_DATABASE_URL": fresh_database})
    assert code == 0, output
    # The plan's rules: rungs of the run's own plan, 8 steps x 8 = 64 samples (the tiny budget's step
    # cap), so the first rung is at 6.4 samples: the evaluation at step 2 (16 samples) decides. The
    # peers stand at F1 1.0 there, beyond any noise margin (0 at F1 1.0).
    assert ("rungs at 0.1 (6 samples), 0.3 (19 samples), 0.9 (58 samples) of this run's planned samples (64 "
            "samples); a run within 1 standard errors of the rung leader's F1 continues") in output, output
    assert result["stop_reason"] == "pruned", output
    assert result["steps_run"] == 2 and result["pruned_at_samples"] == 16 and result["pruned_at_fraction"] == 0.1
    assert (result["pruning_peers"], result["pruning_threshold_f1"]) == (3, 1.0)
    assert result["samples_planned"] == 64 and result["samples_seen"] == 16
    assert "pruned: stops here" in output
    assert result["test_f1"] is not None and result["predictions_path"]  # its best checkpoint, tested
    with sa.create_engine(fresh_database).connect() as connection:
        row = connection.execute(sa.text(
            "SELECT * FROM analytics.pruned_experiments")).mappings().one()
    assert row["experiment_key"] == result["experiment_key"] and row["pruning_peers"] == 3
    assert row["unit"] == "CPU-hour" and row["hours_saved_at_most"] == pytest.approx(
        result["wall_seconds"] / 3600 * (64 - 16) / 16)


def test_with_fewer_peers_than_the_reduction_factor_nothing_is_pruned(tmp_path, dataset_dir, model_root,
                                                                       fresh_database):
    spec = pruning_spec(dataset_dir)
    add_peers(fresh_database, spec, 2, f1=1.0)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                     "SWEEP_DATABASE_URL": fresh_database})
    assert code == 0, output
    assert result["stop_reason"] in ("completed", "early_stopped") and result["pruned_at_fraction"] is None
    assert "2 peer(s) have reached it, fewer than the reduction factor 3" in output


def test_pruning_with_the_database_down_fails_no_run(tmp_path, dataset_dir, model_root):
    spec = pruning_spec(dataset_dir)
    down = "postgresql+psycopg2://sweep@127.0.0.1:9/nowhere?connect_timeout=2"
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root), "SWEEP_DATABASE_URL": down})
    assert result["stop_reason"] in ("completed", "early_stopped"), output
    assert result["test_f1"] is not None
    assert "results database unavailable (OperationalError): nothing pruned, training continues" in output
    assert code == 3  # only the recording waits for the database (a retry or `db sync` records it)
