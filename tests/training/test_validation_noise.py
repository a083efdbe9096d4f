"""Noise where the choice is made: the chosen cell's validation interval in the matrix, and a paired
test of the runner-up on the same validation rows that says when the choice is a tie and what would
break it (issue 27, point 3). Rows in a real Postgres; the prediction files as the finish phase
writes them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.fixtures import CODEBERT, CODET5, result_record
from training.report.noise import rows_to_separate
from training.report.render import render_run_report
from training.results.predictions import VALIDATION_FILE_NAME, read_predictions, recomputed_interval, write_predictions
from training.results.record import ExperimentResult
from training.results.statistics import PairedTest, paired_bootstrap
from training.results.store import record_experiment

LABELS = [1, 0] * 150  # 300 validation rows, as under the demo budget


def validation_file(folder, predicted) -> str:
    folder.mkdir(parents=True)
    logits = np.stack([1 - np.asarray(predicted), np.asarray(predicted)], axis=1).astype(float) * 4
    return str(write_predictions(folder, range(len(LABELS)), LABELS, logits, [0, 1], seed=42,
                                 name=VALIDATION_FILE_NAME))


def wrong_on(rows) -> list[int]:
    return [1 - y if i in rows else y for i, y in enumerate(LABELS)]


def f1(predicted) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(LABELS, predicted))


def record(url, tmp_path, name, predicted, model_id=CODEBERT, learning_rate=2e-5):
    path = validation_file(tmp_path / name, predicted)
    low, high = recomputed_interval(path)
    record_experiment(url, ExperimentResult.from_dict(result_record(
        model_id, learning_rate=learning_rate, validation_f1=f1(predicted), validation_f1_ci_low=low,
        validation_f1_ci_high=high, validation_predictions_path=path)))
    return path, (low, high)


def render(url, tmp_path):
    html = render_run_report(url, "sweep_small", "run-1", out_dir=tmp_path / "report")
    return html.read_text(), html.with_suffix(".md").read_text()


def test_a_runner_up_within_validation_noise_is_called_a_tie_with_what_would_break_it(tmp_path, fresh_database):
    chosen, interval = record(fresh_database, tmp_path, "a", wrong_on(range(0, 300, 12)))  # 25 rows wrong
    runner_up, _ = record(fresh_database, tmp_path, "b", wrong_on(range(1, 300, 11)), learning_rate=5e-5)  # 28
    html, markdown = render(fresh_database, tmp_path)
    a, b = read_predictions(chosen), read_predictions(runner_up)
    test = paired_bootstrap(a.label_index, a.predicted_index, b.predicted_index, 2, 42)
    assert test.verdict == "not distinguishable" and test.difference > 0
    needed = rows_to_separate(300, test)
    assert needed > 300
    assert ("- microsoft/codebert-base: **a tie on validation.** On the 300 validation rows where the choice was "
            "made, the chosen configuration (lr 2e-05, batch 16, 3 epochs, wd 0.01) and the next by validation F1 "
            f"(lr 5e-05, batch 16, 3 epochs, wd 0.01) are a tie (F1 difference {test.difference:+.3f}, 95% "
            f"paired-bootstrap interval {test.low:+.3f} to {test.high:+.3f}, which includes no difference): "
            f"validation noise could have chosen either. To break the tie, about {needed:,} validation rows would"
            ) in markdown
    assert "so would training both with more seeds" in markdown
    # the chosen cell's validation interval, recomputable from its file, in the matrix
    assert (f"| microsoft/codebert-base | {f1(wrong_on(range(0, 300, 12))):.3f} | {interval[0]:.3f} – "
            f"{interval[1]:.3f} | 0.750 |") in markdown
    assert 'class="note tie"' in html and "<th>validation 95% CI</th>" in html


def test_a_runner_up_clearly_behind_on_validation_is_said_to_be_beyond_noise(tmp_path, fresh_database):
    record(fresh_database, tmp_path, "a", wrong_on(range(0, 300, 30)))  # 10 rows wrong
    record(fresh_database, tmp_path, "b", wrong_on(range(0, 300, 4)), learning_rate=5e-5)  # 75, the 10 included
    html, markdown = render(fresh_database, tmp_path)
    assert ("On the 300 validation rows where the choice was made, the chosen configuration (lr 2e-05, batch 16, "
            "3 epochs, wd 0.01) is ahead of the next by validation F1 (lr 5e-05, batch 16, 3 epochs, wd 0.01) beyond "
            "noise (F1 difference +0.") in markdown
    assert "a tie" not in markdown.lower() and 'class="note tie"' not in html


def test_a_model_choice_that_is_a_tie_on_validation_says_so_in_the_recommendation(tmp_path, fresh_database):
    record(fresh_database, tmp_path, "a", wrong_on(range(0, 300, 12)))
    record(fresh_database, tmp_path, "b", wrong_on(range(1, 300, 11)), model_id=CODET5)
    _, markdown = render(fresh_database, tmp_path)
    assert (f"**Most accurate:** {CODEBERT} (validation F1 {f1(wrong_on(range(0, 300, 12))):.3f}, test F1 0.750; "
            f"a tie with {CODET5} on validation, see below)") in markdown
    assert (f"**A tie on validation.** On the 300 validation rows where the choice was made, {CODEBERT} and "
            f"{CODET5} are a tie") in markdown


def test_rows_from_before_validation_predictions_were_kept_say_the_noise_is_not_measured(tmp_path, fresh_database):
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(validation_f1=0.82)))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(learning_rate=5e-5,
                                                                               validation_f1=0.81)))
    _, markdown = render(fresh_database, tmp_path)
    assert "Validation noise is not measured for this choice: no validation predictions were recorded" in markdown
    assert "| microsoft/codebert-base | 0.820 | – | 0.750 |" in markdown


def test_the_rows_that_would_separate_a_difference_grow_with_the_square_of_the_interval():
    # half-width 0.03 around a difference of 0.01 on 300 rows: 300 x 3^2
    assert rows_to_separate(300, PairedTest(0.01, -0.02, 0.04, 5, 4, 1.0)) == 2700
    assert rows_to_separate(300, PairedTest(0.013, -0.02, 0.05, 5, 4, 1.0)) == 2200  # 2174, rounded up to 2 figures
    assert rows_to_separate(300, PairedTest(0.0, -0.02, 0.02, 5, 5, 1.0)) is None
    assert rows_to_separate(40, PairedTest(0.05, 0.01, 0.09, 5, 1, 0.2)) == pytest.approx(26)
