"""Seed reruns vary training only (issue 27): a capped budget's rows are drawn with the plan's
data_seed, so seeds 42 and 43 train and validate on the same rows (they shared 457 of 960
training rows when the seed drew them), and only a change of data_seed changes the sample."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.training.helpers import with_runtime
from training.engine.prepare import prepare
from training.parameters import RunParameters
from training.plan import PlanError, load_plan
from training.spec import build_spec


def prepared(dataset_dir, seed: int, **changes):
    plan = load_plan()
    spec = build_spec(plan, "microsoft/codebert-base", plan.tiers["small"].combinations()[0],
                      RunParameters(budget="demo", dataset=str(dataset_dir), seed=seed), dag_id="d", run_id=f"r{seed}")
    # The demo budget's caps, scaled to this small dataset, so the cap draws a sample of each split.
    spec = dataclasses.replace(spec, max_train_samples=60, max_eval_samples=20, max_test_samples=20, **changes)
    return prepare(with_runtime(spec, {}))


def test_a_seed_rerun_trains_on_the_same_rows_and_is_another_experiment(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "home"))
    first, rerun = prepared(dataset_dir, 42), prepared(dataset_dir, 43)
    assert len(first.row_ids["train"]) == 60 and len(first.splits["train"]) == 60
    assert first.row_ids == rerun.row_ids  # train, validation and test: the same rows
    assert first.key != rerun.key  # the seed still makes it another experiment (initialisation, order)
    assert first.spec.row_seed == rerun.spec.row_seed == load_plan().settings.data_seed
    other_sample = prepared(dataset_dir, 42, data_seed=7)
    assert other_sample.row_ids["train"] != first.row_ids["train"] and other_sample.key != first.key
    # What the row records: the data seed is among the run's settings (like-with-like comparisons).
    assert first.identity.run_settings["data_seed"] == 42 and first.identity.run_settings["seed"] == 42


def test_a_plan_without_data_seed_samples_with_the_seed_as_before(tmp_path):
    written = Path(load_plan().path).read_text()
    path = tmp_path / "plan.toml"
    path.write_text(written.replace("data_seed = 42", ""))
    assert load_plan(path).settings.data_seed == load_plan(path).settings.seed
    bad = tmp_path / "bad.toml"
    bad.write_text(written.replace("data_seed = 42", "data_seed = -1"))
    with pytest.raises(PlanError, match="settings.data_seed"):
        load_plan(bad)
