"""The first task's decision, on the plan's own rules: a scheduled run that starts well after its
cron time (one Airflow makes when a DAG is enabled) is skipped; manual runs never are; params
the plan refuses are named before any training. The real scheduler is in tests/integration."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from training.plan import ParamError
from training.tasks import start_decision

CRON_POINT = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
PARAMS = {"budget": "full", "models": ["microsoft/codebert-base", "Salesforce/codet5-small"], "dataset": None,
          "max_steps": None, "seed": 42, "reuse_results": False}


@pytest.fixture(autouse=True)
def offline(monkeypatch, dataset_dir, model_root):
    """Local data and models, and a hub address nothing listens on: nothing here may need the hub."""
    monkeypatch.setenv("SWEEP_MODEL_ROOT", str(model_root))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    PARAMS["dataset"] = str(dataset_dir)


@pytest.mark.parametrize("run_type, started_after, go", [
    ("scheduled", timedelta(minutes=2), True),  # the nightly run, on time
    ("scheduled", timedelta(minutes=59), True),  # queued behind another tier: still its own night
    ("scheduled", timedelta(hours=13, seconds=31, microseconds=450391), False),  # enabled at 14:00: 01:00 is skipped
    ("scheduled", timedelta(days=3, hours=1), False),  # enabled again after missed nights
    ("manual", timedelta(days=3), True),  # a person pressed Trigger: never skipped
])
def test_only_a_late_scheduled_run_is_skipped(run_type, started_after, go):
    decided, why = start_decision(tier="small", params=PARAMS, run_type=run_type, scheduled_for=CRON_POINT,
                                  now=CRON_POINT + started_after)
    assert decided is go
    if not go:
        assert "beyond the plan's tolerance of 1:00:00" in why and "next cron time" in why
        assert re.search(r"starting \d+ days?, \d+:\d\d:\d\d later|starting \d+:\d\d:\d\d later", why), why


@pytest.mark.parametrize("change, named", [
    ({"budget": "huge"}, "budget = 'huge'"),
    ({"models": []}, "models = []: choose at least one"),
    ({"models": ["Salesforce/codet5-large"]}, "not a model of the small tier"),
    ({"max_steps": 0}, "max_steps = 0"),
    ({"seed": -1}, "seed = -1"),
    ({"dataset": "  "}, "dataset = '  '"),
    ({"max_gpu_hours": 0}, "max_gpu_hours = 0: must be a number above 0"),
    ({"pruning": "yes"}, "pruning = 'yes': must be true, false"),
    ({"learning_rate": "fast"}, "learning_rate = 'fast': not a param of this DAG, which would ignore it; its "
                                "params are budget, dataset, models, max_steps"),
    ({"max_step": 8}, r"max_step = 8: not a param of this DAG, which would ignore it \(did you mean 'max_steps'\?\)"),
])
def test_params_the_plan_refuses_are_named(change, named):
    with pytest.raises(ParamError, match=named.replace("[", r"\[").replace("]", r"\]")):
        start_decision(tier="small", params={**PARAMS, **change}, run_type="manual", scheduled_for=None,
                       now=CRON_POINT)


def test_an_unreachable_hub_fails_at_once_and_says_how_to_use_a_local_copy(monkeypatch):
    import time

    started = time.monotonic()
    with pytest.raises(ParamError) as error:  # the plan's dataset is a hub id
        start_decision(tier="small", params={**PARAMS, "dataset": None}, run_type="scheduled",
                       scheduled_for=CRON_POINT, now=CRON_POINT)
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert "dataset = 'google/code_x_glue_cc_clone_detection_big_clone_bench'" in message
    assert "cannot be reached from this machine (127.0.0.1:9" in message and "local dataset folder" in message
    monkeypatch.setenv("SWEEP_MODEL_ROOT", "/nonexistent")  # local data, but the models from the hub
    with pytest.raises(ParamError, match=r"models = 'microsoft/codebert-base'.*\$SWEEP_MODEL_ROOT/microsoft"):
        start_decision(tier="small", params=PARAMS, run_type="manual", scheduled_for=None, now=CRON_POINT)
    with pytest.raises(ParamError, match="dataset = '/no/such/folder': no such folder"):
        start_decision(tier="small", params={**PARAMS, "dataset": "/no/such/folder"}, run_type="manual",
                       scheduled_for=None, now=CRON_POINT)
