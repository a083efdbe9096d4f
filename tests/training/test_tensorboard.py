"""Curves where people already look (issue 29, point 4): with the plan's report_to = "tensorboard",
the Trainer's own TensorBoard integration writes each experiment's curves beside its checkpoints,
named by run and grid point; the event files read back hold the evaluations Postgres recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.training.helpers import run_cli, spec_for
from training.plan import DEFAULT_PLAN_PATH, PlanError, load_plan


def test_an_experiments_curves_are_in_tensorboard_named_by_run_and_grid_point(tmp_path, dataset_dir, model_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = dataclasses.replace(spec_for("Salesforce/codet5-small", dataset_dir, run_id="manual__2026-12-06"),
                               report_to="tensorboard")
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    [folder] = (Path(result["checkpoint_path"]).parent / "tensorboard").iterdir()
    assert folder.name == "Salesforce_codet5-small_lr_5e-05_bs_8_ep_3_wd_0.01_seed_42"
    events = EventAccumulator(str(folder))
    events.Reload()
    f1 = [(e.step, e.value) for e in events.Scalars("eval/f1")]
    # every evaluation of the run (the best checkpoint's evaluations afterwards are not training ones)
    assert [step for step, _ in f1] == [p["step"] for p in result["eval_points"]]
    assert [value for _, value in f1] == pytest.approx([p["f1"] for p in result["eval_points"]], abs=1e-6)
    assert events.Scalars("train/loss")
    args = events.Tensors("args/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"run_name": "test_dag/manual__2026-12-06/Salesforce/codet5-small lr=5e-05 bs=8 ep=3' in args


def test_report_to_names_what_the_plan_may_say(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(DEFAULT_PLAN_PATH.read_text().replace('report_to = "none"', 'report_to = "mlflow"', 1))
    with pytest.raises(PlanError, match=r"settings.report_to.*none.*tensorboard"):
        load_plan(path)
    assert load_plan().settings.report_to == "none"  # as the plan is written: Postgres and the report only
