"""The HTML report in a real browser (headless Chromium): it renders, with its charts, offline.
The screenshot is kept in test-artifacts/ for a person to look at."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.training.fixtures import LATEST_RUN, warehouse_records
from training.report.render import render_run_report
from training.results.record import ExperimentResult
from training.results.store import record_experiment

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

pytestmark = pytest.mark.slow  # drives a browser


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *arguments],
                          capture_output=True, text=True, timeout=120)


def test_the_html_report_renders_with_its_charts_in_chromium(tmp_path, fresh_database):
    for record in warehouse_records():
        record_experiment(fresh_database, ExperimentResult.from_dict({**record, "is_stand_in": True}))
    report = render_run_report(fresh_database, "sweep_small", LATEST_RUN, tmp_path / "report")

    dom = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert dom.stdout.count('class="chart heatmap"') == 2  # one grid per model: one (epochs, wd) pair here
    assert dom.stdout.count("<polyline") == 2  # a learning curve per model
    assert "Recommendation matrix" in dom.stdout and "Stand-in models" in dom.stdout

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2600", report.as_uri())
    assert shot.returncode == 0, shot.stderr
    assert screenshot.stat().st_size > 50_000  # a page with tables and coloured charts, not a blank one
