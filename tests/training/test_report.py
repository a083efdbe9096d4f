"""The report rendered from rows in a real Postgres: best per model, every experiment, escaping."""

from __future__ import annotations

import pytest

from tests.training.fixtures import result_record
from training.report import render_run_report
from training.results import record_experiment


def test_report_lists_every_experiment_and_the_best_per_model(tmp_path, fresh_database):
    records = [
        result_record(learning_rate=2e-5, validation_f1=0.80, test_f1=0.79),
        result_record(learning_rate=5e-5, validation_f1=0.86, test_f1=0.77),
        result_record("Salesforce/codet5-small", validation_f1=0.70, test_f1=0.71),
        result_record("Salesforce/codet5-small", learning_rate=5e-5, validation_f1=None, test_f1=None,
                      stop_reason="failed", error="RuntimeError: boom"),
    ]
    for record in records:
        record_experiment(fresh_database, record)
    html_path = render_run_report(fresh_database, "sweep_small", "run-1", root=tmp_path)
    assert html_path == tmp_path / "sweep_small" / "run-1" / "report.html"
    markdown = html_path.with_suffix(".md").read_text()
    assert "4 experiments, 1 failed" in markdown
    # best by validation F1 (0.86), although another run had the higher test F1
    assert "| microsoft/codebert-base | 5e-05 | 16 | 3 | 0.01 | 0.860 | 0.770 |" in markdown
    assert "| Salesforce/codet5-small | 2e-05 | 16 | 3 | 0.01 | 0.700 | 0.710 |" in markdown
    assert markdown.count("| failed |") == 1
    assert "Stand-in models" not in markdown
    html = html_path.read_text()
    assert html.count("<tr class=\"best\"") == 2 and 'title="RuntimeError: boom"' in html


def test_stand_in_results_carry_a_notice(tmp_path, fresh_database):
    record_experiment(fresh_database, result_record(is_stand_in=True))
    html_path = render_run_report(fresh_database, "sweep_small", "run-1", root=tmp_path)
    for text in (html_path.read_text(), html_path.with_suffix(".md").read_text()):
        assert "Stand-in models" in text and "says nothing about the real models" in text


def test_markup_in_names_is_escaped_in_html(tmp_path, fresh_database):
    record_experiment(fresh_database, result_record("<script>alert(1)</script>"))
    html = render_run_report(fresh_database, "sweep_small", "run-1", root=tmp_path).read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_with_no_experiments_still_renders(tmp_path, fresh_database):
    html_path = render_run_report(fresh_database, "sweep_small", "nothing-ran", root=tmp_path)
    assert "No experiments were recorded" in html_path.read_text()
    assert "No experiments were recorded" in html_path.with_suffix(".md").read_text()
