"""The report read as someone choosing what to ship: no winner named when nothing beats the trivial
answer, ties that go to the cheaper configuration (and say when a step cap made epochs irrelevant),
the most accurate model first in the matrix, and a change flag explained only when something is
flagged. Rendered in headless Chromium as well, since that is where a person reads it."""

from __future__ import annotations

import pytest

from tests.training.fixtures import CODEBERT, CODET5, result_record
from tests.training.test_report import predictions_file, render
from tests.training.test_report_browser import chromium
from training.results.record import ExperimentResult
from training.results.store import finish_sweep_run, record_experiment


def record(url, **fields) -> None:
    record_experiment(url, ExperimentResult.from_dict(result_record(**fields)))


@pytest.mark.slow  # drives a browser
def test_when_no_model_beats_always_answering_positive_no_winner_is_named(tmp_path, fresh_database):
    labels = [1, 0] * 50
    for model_id, folder in ((CODEBERT, "a"), (CODET5, "b")):
        record(fresh_database, model_id=model_id, validation_f1=0.67 if model_id == CODEBERT else 0.66,
               test_f1=0.667, predictions_path=predictions_file(tmp_path / folder, labels, [1] * 100))
    path, html, markdown = render(fresh_database, tmp_path)
    assert markdown.count("> **Learned little.**") == 2
    assert ("- **Most accurate:** none (no model to ship: none beats always answering the positive class (F1 0.667 "
            "on the test rows); train longer, on more data, or check the labels)") in markdown
    assert "Best F1 per" not in markdown and "Fastest within" not in markdown
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert "no model to ship" in dom and "Most accurate:</strong> microsoft" not in dom


@pytest.mark.slow  # drives a browser
def test_a_tie_goes_to_the_cheaper_configuration_and_the_cap_is_named(tmp_path, fresh_database):
    """Under a step cap of 8 the 3- and 5-epoch cells are the same run (same F1); the 5-epoch one
    happened to be faster on the clock, which used to decide. Now the fewer epochs win."""
    for epochs, wall in ((3, 40.0), (5, 30.0)):
        record(fresh_database, key=f"k{epochs}", num_epochs=epochs, wall_seconds=wall, gpu_hours=0.0, gpu_count=0,
               validation_f1=0.7, max_steps=8, steps_planned=8, steps_run=8, steps_planned_by="max_steps",
               stop_reason="completed")
    path, html, markdown = render(fresh_database, tmp_path)
    best = markdown.split("## Optimal configuration per model")[1]
    assert "| microsoft/codebert-base | 2e-05 | 16 | 3 |" in best, best[:600]
    note = ("The step cap (8 steps) bound every run of microsoft/codebert-base, so its 3 and 5-epoch cells trained "
            "the same number of steps: epochs made no difference here, and ties went to the fewest epochs (3)")
    assert note in markdown
    assert note in chromium(tmp_path, "--dump-dom", path.as_uri()).stdout


@pytest.mark.parametrize("previous_f1, flagged", [(0.745, False), (0.60, True)])
def test_the_matrix_puts_the_most_accurate_first_and_explains_a_flag_only_when_one_is_shown(
        tmp_path, fresh_database, previous_f1, flagged):
    for run_id, day, f1 in (("before", "24", previous_f1), ("now", "25", 0.75)):
        record(fresh_database, model_id=CODET5, run_id=run_id, key=f"{run_id}-a", validation_f1=0.71, test_f1=0.7,
               started_at=f"2026-11-{day}T02:00:00+00:00")
        record(fresh_database, model_id=CODEBERT, run_id=run_id, key=f"{run_id}-b", validation_f1=0.8, test_f1=f1,
               test_f1_ci_low=0.70, test_f1_ci_high=0.80, started_at=f"2026-11-{day}T02:00:00+00:00")
        finish_sweep_run(fresh_database, "sweep_small", run_id, "small", "manual")
    path, html, markdown = render(fresh_database, tmp_path, "now")
    matrix = markdown.split("## Recommendation matrix")[1].split("\n- **")[0]
    assert matrix.index(f"| {CODEBERT} |") < matrix.index(f"| {CODET5} |")  # validation F1 0.80 before 0.71
    assert ("⚑ marks a change where the previous F1 lies outside" in markdown) is flagged
    assert ("No change is beyond this run's 95% interval." in markdown) is not flagged
    assert ("⚑" in markdown.split("## Change since the previous run")[1]) is flagged


def test_the_learning_curve_has_a_step_axis_with_round_ticks():
    from training.report.charts import learning_curves, step_ticks

    assert step_ticks(8) == [0, 2, 4, 6, 8] and step_ticks(240) == [0, 50, 100, 150, 200]
    assert step_ticks(1000) == [0, 200, 400, 600, 800, 1000] and len(step_ticks(5873)) <= 6
    svg = str(learning_curves("curve", {"best": [(100, 0.5), (200, 0.6), (240, 0.65)]}))
    labels = [f'text-anchor="middle">{tick}</text>' for tick in (0, 50, 100, 150, 200)]
    assert all(label in svg for label in labels) and "optimizer step" in svg


def settings(**changes) -> dict:
    """Run settings as ExperimentSpec.run_settings() records them, for the demo budget."""
    from training.spec import PLAN_AS_WRITTEN
    from training.tasks import experiment_spec

    spec = experiment_spec(model_id=CODEBERT, tier="small", hyperparameters={
        "learning_rate": 2e-5, "batch_size": 16, "num_epochs": 3, "weight_decay": 0.01},
        run=PLAN_AS_WRITTEN, require_database=False)
    return {**spec.run_settings(), **changes}


def three_runs(url, capped_middle: dict) -> None:
    """Nightly-style runs a, b, c of CodeBERT; b has other run settings than a and c."""
    for run_id, day, f1, run_settings in (("a", "23", 0.70, settings()), ("b", "24", 0.60, settings(**capped_middle)),
                                          ("c", "25", 0.75, settings())):
        record(url, run_id=run_id, key=f"{run_id}-k", test_f1=f1, run_settings=run_settings,
               started_at=f"2026-11-{day}T02:00:00+00:00")
        finish_sweep_run(url, "sweep_small", run_id, "small", "manual")


def test_a_run_is_compared_only_with_one_equal_in_step_cap_seed_and_settings(tmp_path, fresh_database):
    # A 40-step smoke run between two full ones: c compares with a, skipping b (it compared with b
    # and printed -0.15 as an ordinary change; issue 27).
    three_runs(fresh_database, {"max_steps": 40, "seed": 43})
    _, html, markdown = render(fresh_database, tmp_path, "c")
    change = markdown.split("## Change since the previous run")[1]
    assert "Compared with `a`" in change and "| 0.750 | 0.700 | +0.050 |" in change
    _, html, markdown = render(fresh_database, tmp_path / "b", "b")
    change = markdown.split("## Change since the previous run")[1]
    assert "Compared with" not in change and "| 0.600 |" not in change
    assert ("No change is shown: no earlier successful run of this tier is comparable (1 checked); the latest, a, "
            "differs in step cap: 40 here, none there; seed: 43 here, 42 there.") in change
    assert "step cap: 40 here, none there" in html


def test_pruning_and_stand_ins_make_runs_incomparable_and_are_named(tmp_path, fresh_database):
    three_runs(fresh_database, {"pruning": {"method": "asha", "reduction_factor": 3, "min_fraction": 0.1}})
    _, _, markdown = render(fresh_database, tmp_path, "b")
    assert "differs in pruning: method asha, min_fraction 0.1, reduction_factor 3 here, none there" in markdown
    record(fresh_database, run_id="d", key="d-k", is_stand_in=True, run_settings=settings(),
           started_at="2026-11-26T02:00:00+00:00")
    _, _, markdown = render(fresh_database, tmp_path / "d", "d")
    assert "the latest, c, differs in stand-in or real models: yes here, no there" in markdown


def test_when_f1_and_rows_right_point_different_ways_the_verdict_says_it_is_on_f1(tmp_path, fresh_database):
    """Issue 27: "better" on the F1 bootstrap while McNemar counted the other model right on more rows.
    A catches every positive but raises false alarms; B is cautious: fewer rows wrong, lower F1."""
    labels = [1] * 200 + [0] * 200
    a = [1] * 200 + [1 if i < 90 else 0 for i in range(200)]  # 200 TP, 90 FP: F1 0.816, 310 right
    b = [1 if i < 130 else 0 for i in range(200)] + [0] * 200  # 130 TP, 70 FN, 0 FP: F1 0.788, 330 right
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        validation_f1=0.82, test_f1=0.816, predictions_path=predictions_file(tmp_path / "a", labels, a))))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.79, test_f1=0.788, predictions_path=predictions_file(tmp_path / "b", labels, b))))
    _, html, markdown = render(fresh_database, tmp_path)
    verdict = markdown.split("**Verdict: ")[1].split("\n")[0]
    assert "F1 difference +0.02" in verdict
    assert "rows right: 70 only by microsoft/codebert-base, 90 only by Salesforce/codet5-small" in verdict
    assert ("The two statistics point different ways: Salesforce/codet5-small gets more rows right, while the "
            "other's F1 is higher; F1 counts the positive class's hits and errors only, rows right count every row "
            "alike. The verdict is on F1.") in verdict
    assert verdict.startswith(("higher F1.", "F1 not distinguishable."))  # never "better" on a count it lost
