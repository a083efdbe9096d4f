"""The report rendered from rows in a real Postgres: the four deliverables, the change since the
previous run, escaping, and the empty and failed cases."""

from __future__ import annotations

import re

from tests.training.fixtures import CODEBERT, CODET5, LATEST_RUN, PREVIOUS_RUN, result_record, warehouse_records
from training.report.render import render_run_report
from training.results.record import ExperimentResult
from training.results.store import finish_sweep_run, record_experiment


def render(url, tmp_path, run_id="run-1"):
    html_path = render_run_report(url, "sweep_small", run_id, out_dir=tmp_path / "sweep_small" / run_id)
    return html_path, html_path.read_text(), html_path.with_suffix(".md").read_text()


def test_report_lists_every_experiment_and_the_best_per_model(tmp_path, fresh_database):
    records = [{**record, "positive_label": "1", "class_count": 2, "train_rows": 2000, "validation_rows": 400,
                "test_rows": 400} for record in [
        result_record(learning_rate=2e-5, validation_f1=0.80, test_f1=0.79),
        result_record(learning_rate=5e-5, validation_f1=0.86, test_f1=0.77),
        result_record(CODET5, validation_f1=0.70, test_f1=0.71),
        result_record(CODET5, learning_rate=5e-5, validation_f1=None, test_f1=None,
                      stop_reason="failed", error="RuntimeError: boom"),
    ]]
    for record in records:
        record_experiment(fresh_database, ExperimentResult.from_dict(record))
    html_path, html, markdown = render(fresh_database, tmp_path)
    assert html_path == tmp_path / "sweep_small" / "run-1" / "report.html"
    assert "4 experiments, 1 failed" in markdown
    # best by validation F1 (0.86), although another run had the higher test F1
    assert "| microsoft/codebert-base | 5e-05 | 16 | 3 | 0.01 | 0.860 | 0.770 |" in markdown
    assert "| Salesforce/codet5-small | 2e-05 | 16 | 3 | 0.01 | 0.700 | 0.710 |" in markdown
    assert "| Salesforce/codet5-small | 5e-05 | 16 | 3 | 0.01 | failed | 1 | 0.1000 | RuntimeError: boom |" in markdown
    assert "Stand-in models" not in markdown
    assert "F1 is of the positive class '1'; rows: 2000 train, 400 validation, 400 test." in markdown
    assert "F1 is of the positive class &#39;1&#39;" in html
    assert html.count('<tr class="best"') == 2 and 'title="RuntimeError: boom"' in html
    assert html.count('class="chart heatmap"') == 2 and html.count('class="chart curves"') == 2
    assert "No earlier successful run of this tier to compare with." in markdown


def test_recommendations_intervals_and_the_change_since_the_previous_run(tmp_path, fresh_database):
    for record in warehouse_records():
        latency = {CODEBERT: 12.0, CODET5: 4.0}[record["model_id"]]
        ci = (record["test_f1"] - 0.03, record["test_f1"] + 0.03) if record["test_f1"] else (None, None)
        record_experiment(fresh_database, ExperimentResult.from_dict({**record, "latency_batch1_ms": latency,
                                           "test_f1_ci_low": ci[0], "test_f1_ci_high": ci[1]}))
    finish_sweep_run(fresh_database, "sweep_small", PREVIOUS_RUN, "small", "scheduled")  # it succeeded
    _, html, markdown = render(fresh_database, tmp_path, LATEST_RUN)
    assert "**Most accurate:** microsoft/codebert-base (validation F1 0.850, test F1 0.860)" in markdown
    # by validation F1: codebert 0.85 / 0.23 GPU-h = 3.70; codet5 0.75 / 0.05 = 15.0
    assert ("**Best F1 per GPU-hour:** Salesforce/codet5-small (15.000 validation F1 per GPU-hour for the sweep)"
            in markdown)
    # codet5 (0.74) is not within one point of 0.86: the fastest close model is codebert itself
    assert "**Fastest within one F1 point of the best:** microsoft/codebert-base (12.0 ms" in markdown
    assert "not compared, no predictions file was recorded for one of them." in markdown  # fixtures have none
    assert f"Compared with `{PREVIOUS_RUN}`" in markdown
    # codebert 0.82 -> 0.86: outside [0.83, 0.89], flagged; codet5 0.69 -> 0.74: outside [0.71, 0.77]
    assert "| microsoft/codebert-base | 0.860 | 0.820 | +0.040 ⚑ |" in markdown
    assert "| Salesforce/codet5-small | 0.740 | 0.690 | +0.050 ⚑ |" in markdown
    assert "| microsoft/codebert-base | 2 | 0.2300 | 0.0800 |" in markdown  # resources: saved by early stopping


def predictions_file(folder, labels, predicted, row_ids=None) -> str:
    """A predictions file as the finish phase writes it, from chosen predictions."""
    import numpy as np

    from training.results.predictions import write_predictions

    folder.mkdir(parents=True)
    logits = np.stack([1 - np.asarray(predicted), np.asarray(predicted)], axis=1).astype(float) * 4
    rows = range(len(labels)) if row_ids is None else row_ids
    return str(write_predictions(folder, rows, labels, logits, [0, 1], seed=42))


def test_the_verdict_between_models_comes_from_a_paired_test_on_the_same_rows(tmp_path, fresh_database):
    labels = [1, 0] * 100
    strong = list(labels)
    weak = [1 - y if i % 4 == 0 else y for i, y in enumerate(labels)]  # 50 of 200 rows wrong
    close = [1 - y if i == 1 else y for i, y in enumerate(strong)]  # one row from strong
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        validation_f1=0.82, test_f1=1.0, predictions_path=predictions_file(tmp_path / "a", labels, strong))))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.79, test_f1=0.75, predictions_path=predictions_file(tmp_path / "b", labels, weak))))
    # within codet5: its runner-up configuration, one row away from codebert's predictions
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, learning_rate=5e-5, validation_f1=0.70, test_f1=0.99,
        predictions_path=predictions_file(tmp_path / "c", labels, close))))
    _, html, markdown = render(fresh_database, tmp_path)
    assert ("**Verdict: higher F1.** microsoft/codebert-base has a higher F1 than Salesforce/codet5-small on the "
            "same test rows (F1 difference +0.") in markdown
    assert ("rows right: 50 only by microsoft/codebert-base, 0 only by Salesforce/codet5-small, McNemar p = "
            in markdown)
    assert "point different ways" not in markdown  # both statistics favour codebert
    # codet5's chosen configuration (by validation) is worse on test than its runner-up: still chosen, and said so
    assert "| Salesforce/codet5-small | 2e-05 | 16 | 3 | 0.01 | 0.790 | 0.750 |" in markdown
    assert ("- Salesforce/codet5-small: the next by validation F1 (lr 5e-05, batch 16, 3 epochs, wd 0.01) has a "
            "higher F1 than the chosen configuration (lr 2e-05, batch 16, 3 epochs, wd 0.01) on the same test rows "
            "(F1 difference -0.") in markdown
    assert ("rows right: 1 only by the chosen configuration (lr 2e-05, batch 16, 3 epochs, wd 0.01), 50 only by the "
            "next by validation F1 (lr 5e-05, batch 16, 3 epochs, wd 0.01)") in markdown
    assert "): validation chose otherwise" in markdown
    assert 'class="note verdict"' in html


def test_close_models_are_not_distinguishable_and_missing_predictions_are_said(tmp_path, fresh_database):
    labels = [1, 0] * 100
    a = [1 - y if i % 10 == 0 else y for i, y in enumerate(labels)]
    b = [1 - y if i % 10 == 1 else y for i, y in enumerate(labels)]  # as many errors, on other rows
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        validation_f1=0.82, test_f1=0.80, predictions_path=predictions_file(tmp_path / "a", labels, a))))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.79, test_f1=0.80, predictions_path=predictions_file(tmp_path / "b", labels, b))))
    _, _, markdown = render(fresh_database, tmp_path)
    assert ("**Verdict: F1 not distinguishable.** The F1 of microsoft/codebert-base and of Salesforce/codet5-small "
            "is not distinguishable on the same test rows (F1 difference -0.020") in markdown
    shifted = predictions_file(tmp_path / "c", labels, b, row_ids=range(1, 201))  # other rows
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.79, predictions_path=shifted)))
    _, _, markdown = render(fresh_database, tmp_path)
    assert "not compared, they were not scored on the same test rows." in markdown
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(CODET5, validation_f1=0.79)))
    _, _, markdown = render(fresh_database, tmp_path)
    assert "not compared, no predictions file was recorded for one of them." in markdown


def test_seed_reruns_show_mean_and_sd_and_weigh_in_the_verdict(tmp_path, fresh_database):
    """A paired test that says "better", but training seeds that spread wider than the gap: the
    verdict is "not distinguishable", and the reruns never become the chosen configuration."""
    labels = [1, 0] * 100
    strong = list(labels)
    weak = [1 - y if i % 8 == 0 else y for i, y in enumerate(labels)]
    chosen = {CODEBERT: "bert-chosen", CODET5: "t5-chosen"}
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        key=chosen[CODEBERT], validation_f1=0.82, test_f1=0.90, seed=42,
        run_settings={"budget": "demo", "seed": 42, "data_seed": 42, "max_train_samples": 960},
        predictions_path=predictions_file(tmp_path / "a", labels, strong))))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, key=chosen[CODET5], validation_f1=0.79, test_f1=0.85, seed=42,
        predictions_path=predictions_file(tmp_path / "b", labels, weak))))
    seed_f1 = {CODEBERT: [(0.95, 0.70), (0.80, 0.95)], CODET5: [(0.70, 0.80), (0.75, 0.90)]}
    for model_id, reruns in seed_f1.items():
        for seed, (validation_f1, test_f1) in zip((43, 44), reruns):
            record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
                model_id, key=f"{chosen[model_id]}-{seed}", seed=seed, confirmation_of=chosen[model_id],
                validation_f1=validation_f1, test_f1=test_f1, gpu_hours=0.05)))
    _, html, markdown = render(fresh_database, tmp_path)
    assert "**Most accurate:** microsoft/codebert-base (validation F1 0.820" in markdown  # not the 0.95 rerun
    assert ("microsoft/codebert-base, the chosen configuration over 3 training seeds (42, 43, 44): validation F1 "
            "0.857 ± 0.081, test F1 0.850 ± 0.132 (mean ± sd). The seeds: each seed varied initialisation and the "
            "order of training batches only, on the same rows for every seed, sampled with the plan's data seed 42."
            ) in markdown
    assert markdown.count("The seeds: ") == 1  # codet5's rows predate recorded run settings: nothing claimed
    assert "**Verdict: F1 not distinguishable.**" in markdown
    assert ("over 3 and 3 training seeds, mean test F1 0.850 ± 0.132 against 0.850 ± 0.050, a gap within the "
            "seeds' spread") in markdown
    assert "Seed confirmation (plan setting `confirm_seeds`) cost 0.2000 GPU-hours of this run." in markdown
    assert "| early_stopped (seed 43) |" in markdown and html.count('class="seed') == 4
    assert "6 experiments" in markdown


def test_held_out_rows_repeating_training_rows_are_a_warning(tmp_path, fresh_database):
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        train_rows=960, test_rows=400, validation_rows=200, test_duplicates_of_train=12,
        test_rows_all_texts_in_train=14, test_rows_sharing_train_text=110,
        validation_duplicates_of_train=0, validation_rows_sharing_train_text=0)))
    _, html, markdown = render(fresh_database, tmp_path)
    assert ("> **Leakage.** 12 of 400 test rows (3.0%) are exact duplicates of a training row, 14 (3.5%) have every "
            "text in training, if not as this pair (near-copies), and 110 (27.5%) share at least one text with a "
            "training row (the same function under another pair) (counted against the 960 training rows this run "
            "kept; `check-data` counts against all of the dataset's): test F1 is optimistic for code the model has "
            "never seen.") in markdown
    assert "validation rows" not in markdown and html.count("<strong>Leakage.</strong>") == 1


def test_the_recommendation_follows_validation_not_test(tmp_path, fresh_database):
    """codebert is better on validation, codet5 on test: every choice follows validation, and test
    F1 is shown only as the figure of what was chosen."""
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        validation_f1=0.90, test_f1=0.70, latency_batch1_ms=5.0, gpu_hours=0.1)))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.80, test_f1=0.95, latency_batch1_ms=1.0, gpu_hours=0.1)))
    _, html, markdown = render(fresh_database, tmp_path)
    assert "**Most accurate:** microsoft/codebert-base (validation F1 0.900, test F1 0.700)" in markdown
    assert "**Best F1 per GPU-hour:** microsoft/codebert-base" in markdown
    assert "**Fastest within one F1 point of the best:** microsoft/codebert-base" in markdown  # codet5 not within
    assert "made on validation F1; test F1 is measured once" in markdown and "made on validation F1" in html
    assert "validation F1, 3 epochs" in html and "test F1, 3 epochs" not in html  # the heatmaps


def test_stand_in_results_carry_a_notice(tmp_path, fresh_database):
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(is_stand_in=True, gpu_hours=0.0)))
    _, html, markdown = render(fresh_database, tmp_path)
    for text in (html, markdown):
        assert "Stand-in models" in text and "says nothing about the real models" in text
    # Nothing ran on a GPU: one unit everywhere, CPU-hours (wall-clock), said once in the header.
    assert "sweep cost (CPU-hours)" in markdown and "GPU-hours" not in markdown and "wall-clock hours" in markdown
    assert "0.1000 CPU-hours (0.0500 saved by early stopping): nothing ran on a GPU" in markdown


def test_markup_in_names_is_escaped_in_html_and_markdown(tmp_path, fresh_database):
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record("<script>alert(1)</script>")))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, stop_reason="failed", validation_f1=None, test_f1=None, positive_label="<img src=x onerror=alert(2)>",
        error="RuntimeError: <script>alert(3)</script>")))
    _, html, markdown = render(fresh_database, tmp_path)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"<svg[^>]*aria-label=\"<script", html)
    # Markdown passes raw HTML through to whatever renders it: every value is escaped there too
    assert "<script" not in markdown and "<img" not in markdown, markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "&lt;script&gt;alert(3)" in markdown


def test_a_run_with_no_experiments_still_renders(tmp_path, fresh_database):
    _, html, markdown = render(fresh_database, tmp_path, "nothing-ran")
    assert "No experiments were recorded" in html and "No experiments were recorded" in markdown


def test_only_a_successful_run_on_the_same_data_and_budget_is_compared(tmp_path, fresh_database):
    def run(run_id, day, **overrides):
        record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
            run_id=run_id, started_at=f"2026-11-{day}T02:00:00+00:00", **overrides)))
        return finish_sweep_run(fresh_database, "sweep_small", run_id, "small", "scheduled")

    assert run("other-data", "20", dataset_fingerprint="devign", test_f1=0.5) == "success"
    assert run("demo-budget", "21", budget="demo", test_f1=0.6) == "success"
    assert run("stand-ins", "22", is_stand_in=True, test_f1=0.65) == "success"
    assert run("failed", "23", stop_reason="failed", test_f1=None, validation_f1=None) == "failed"
    run("latest", "25")
    _, _, markdown = render(fresh_database, tmp_path, "latest")
    assert ("No change is shown: no earlier successful run of this tier is comparable (3 checked); the latest, "
            "stand-ins, differs in stand-in or real models: no here, yes there.") in markdown
    assert run("comparable", "24", test_f1=0.7) == "success"
    _, _, markdown = render(fresh_database, tmp_path, "latest")
    assert "Compared with `comparable`" in markdown and "| 0.750 | 0.700 | +0.050" in markdown


def test_a_chosen_model_no_better_than_a_constant_is_called_out(tmp_path, fresh_database):
    labels = [1, 0] * 50
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        validation_f1=0.67, test_f1=0.667, predictions_path=predictions_file(tmp_path / "a", labels, [1] * 100))))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.6, predictions_path=predictions_file(tmp_path / "b", labels, labels))))
    _, html, markdown = render(fresh_database, tmp_path)
    assert ("> **Learned little.** microsoft/codebert-base: the chosen configuration is no better than always "
            "predicting the positive class (F1 0.667 on these rows; difference +0.000, 95% paired interval +0.000 "
            "to +0.000); it predicts the positive class for 100% of test rows, so it has learned little.") in markdown
    assert "Salesforce/codet5-small: the chosen" not in markdown and "<strong>Learned little.</strong>" in html


def test_stand_ins_are_never_ranked_against_real_models(tmp_path, fresh_database):
    """A run where one model loaded from a mirror of the real weights and the other fell back to a
    stand-in: the stand-in's higher validation F1 does not make it the recommendation."""
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(validation_f1=0.70)))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
        CODET5, validation_f1=0.95, is_stand_in=True)))
    _, html, markdown = render(fresh_database, tmp_path)
    assert "**Most accurate:** microsoft/codebert-base (validation F1 0.700" in markdown
    assert "| Salesforce/codet5-small (stand-in) | 0.950 |" in markdown and "(stand-in)</td>" in html
    assert "not ranked against the real models" in markdown and "**Verdict" not in markdown


def test_the_resource_section_states_what_checkpointing_compiling_and_saves_cost(tmp_path, fresh_database):
    """Runs of one model that went both ways with gradient_checkpointing = "auto": the throughput
    with and without is set side by side; compiled runs say how long compiling took; the saves,
    what they wrote and of which kind."""
    for lr, checkpointed, speed, compile_seconds, saves in ((2e-5, True, 60.0, 50.0, (3, 1)),
                                                             (5e-5, False, 100.0, 4.0, (2, 0))):
        record_experiment(fresh_database, ExperimentResult.from_dict(result_record(
            learning_rate=lr, activation_checkpointing=checkpointed, samples_per_second=speed, compiled=True,
            compile_seconds=compile_seconds, model_checkpoints_saved=saves[0], full_checkpoints_saved=saves[1],
            checkpoint_bytes_written=(saves[0] + 3 * saves[1]) * 2**20)))
    _, html, markdown = render(fresh_database, tmp_path)
    line = (f"- {CODEBERT}: compiled in 2 of 2 runs (compiling: 50.0 s at most, 4.0 s at least); activation "
            "checkpointing on in 1 runs at 60.0 samples/s, off in 1 at 100.0 samples/s: it cost 40% of the throughput; "
            "saves wrote 8.0 MiB over 2 runs: 5 of the model only (a new best), 1 with the full resumable state "
            "(every full_checkpoint_minutes, and on SIGTERM).")
    assert line in markdown, markdown
    assert "it cost 40% of the throughput" in html and "saves wrote 8.0 MiB over 2 runs" in html


def test_a_pruned_run_is_listed_with_its_rung_and_configuration(tmp_path, fresh_database):
    for record in (result_record(learning_rate=2e-5, validation_f1=0.8),
                   result_record(learning_rate=5e-5, validation_f1=0.6, stop_reason="pruned", pruned_at_fraction=0.1,
                                 pruned_at_samples=480, samples_seen=480, samples_planned=4800, pruning_f1=0.6,
                                 pruning_threshold_f1=0.7, pruning_peers=3)):
        record_experiment(fresh_database, ExperimentResult.from_dict(record))
    _, html, markdown = render(fresh_database, tmp_path)
    row = next(line for line in markdown.splitlines() if line.startswith("| microsoft/codebert-base | lr 5e-05"))
    assert "lr 5e-05, batch 16, 3 epochs, wd 0.01 | 0.1 | 480 / 4800 | 0.600 | 0.700 | 3 |" in row
    assert "<td>lr 5e-05, batch 16, 3 epochs, wd 0.01</td>" in html
