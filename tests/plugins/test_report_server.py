"""The report server serves only reports: names with dots or separators never leave the reports
folder, symlinks are not followed out of it, and every response forbids scripts and sniffing.
The route's own function is called here (Airflow's login guards the route; test_local_stack sends
the same attacks through the real api-server)."""

from __future__ import annotations

import pytest


@pytest.fixture
def reports(tmp_path, monkeypatch):
    root = tmp_path / "home" / "reports"
    (root / "sweep_small" / "run-1").mkdir(parents=True)
    (root / "sweep_small" / "run-1" / "report.html").write_text("<h1>the report</h1>")
    (tmp_path / "report.html").write_text("two folders above the reports")
    (tmp_path / "home" / "report.html").write_text("one folder above the reports")
    monkeypatch.setenv("SWEEP_REPORTS_DIR", str(root))
    return root


def served(dag_id: str, run_id: str, name: str = "report.html"):
    from fastapi import HTTPException

    from sweep_airflow.report_server import report

    try:
        return report(dag_id, run_id, name)
    except HTTPException as error:
        return error.status_code


def test_a_report_is_served_with_headers_that_forbid_scripts(reports):
    response = served("sweep_small", "run-1")
    assert response.body == b"<h1>the report</h1>"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "script-src 'none'" in policy and "default-src 'none'" in policy
    assert response.media_type.startswith("text/html")


@pytest.mark.parametrize("dag_id, run_id", [("..", ".."), (".", ".."), ("...", "..."), ("sweep_small", ".."),
                                            ("../..", "x"), ("%2e%2e", "%2e%2e")])
def test_dots_never_lead_out_of_the_reports_folder(reports, dag_id, run_id):
    assert served(dag_id, run_id) == 404


def test_a_symlink_out_of_the_reports_folder_is_not_followed(reports, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    (reports / "sweep_small" / "run-2").mkdir()
    (reports / "sweep_small" / "run-2" / "report.html").symlink_to(secret)
    (reports / "linked").symlink_to(tmp_path)  # a whole folder linked out
    assert served("sweep_small", "run-2") == 404
    assert served("linked", "home", "report.html") == 404


def test_safe_name_keeps_every_name_one_component_inside_its_folder():
    from training.settings import safe_name

    assert (safe_name(".."), safe_name("."), safe_name("../..")) == ("__", "_", "___..")
    for name in ("..", ".", "../..", "a/../..", "..\\..", "", "/", ".hidden"):
        component = safe_name(name)
        assert "/" not in component and component not in (".", "..") and not component.startswith(".")
    assert safe_name("manual__2026-12-06T10:00:00+00:00") == "manual__2026-12-06T10_00_00_00_00"


def test_render_report_never_writes_outside_the_reports_folder(reports, fresh_database, tmp_path):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "training", "render-report", "--dag-id", "..", "--run-id", ".."],
                          env={**os.environ, "SWEEP_DATABASE_URL": fresh_database, "SWEEP_REPORTS_DIR": str(reports)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = done.stdout.strip().splitlines()[-1]
    assert written.startswith(str(reports.resolve()) + "/"), written
    assert (tmp_path / "report.html").read_text() == "two folders above the reports"
