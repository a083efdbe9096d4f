"""Render a run report: read the run (and the one it is compared with) from the results DB, build
the report (build.py), and write report.html (autoescaped) and report.md through Jinja."""

from __future__ import annotations

import dataclasses
import html
import json
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from training.export.package import run_exports
from training.report.build import RunReport, build_report
from training.report.costs import run_cost
from training.results.comparable import comparable_previous_run
from training.results.history import run_estimate
from training.results.store import evaluation_curves, run_experiments

TEMPLATES = Path(__file__).with_name("templates")


def environment(autoescape: bool) -> jinja2.Environment:
    """HTML autoescaped; Markdown with every value's HTML escaped too, since Markdown passes raw
    HTML through (a model id, a label or an error message could carry a <script>)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=None if autoescape else markdown_text)
    env.filters["score"] = lambda value: "–" if value is None else f"{value:.3f}"
    env.filters["signed"] = lambda value: "–" if value is None else f"{value:+.3f}"
    env.filters["number"] = lambda value, digits=1: "–" if value is None else f"{value:,.{digits}f}"
    env.filters["mebibytes"] = lambda value: "–" if not value else f"{value / 2**20:,.1f} MiB"
    env.filters["hours"] = lambda seconds: "–" if seconds is None else f"{seconds / 3600:,.3f}"
    env.filters["millions"] = lambda value: "–" if not value else f"{value / 1e6:,.2f} M"
    env.filters["cost"] = run_cost  # an experiment's cost in the report's unit
    return env


def markdown_text(value):
    """A value as Markdown text: HTML's special characters escaped, everything else as it is."""
    return html.escape(value, quote=False) if isinstance(value, str) else value


def render(report: RunReport, out_dir: Path, summary: dict | None = None) -> Path:
    """report.html, report.md and summary.json (the reports index's row of this run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps({**(summary or {}), **summary_of(report)}, indent=2,
                                                     default=str))
    (out_dir / "report.md").write_text(environment(False).get_template("report.md.j2").render(report=report))
    html_path = out_dir / "report.html"
    html_path.write_text(environment(True).get_template("report.html.j2").render(report=report))
    return html_path


def summary_of(report: RunReport) -> dict:
    """What the reports index shows of a run, beside what the report task knows (tier, state, the
    params it was triggered with)."""
    chosen = [{"model_id": m.model_id, "test_f1": m.best.test_f1} for m in report.models if m.best]
    return {"dag_id": report.dag_id, "run_id": report.run_id, "experiments": report.experiment_count,
            "failed": report.failed_count, "refusal": report.refusal, "chosen": chosen,
            "most_accurate": next((pick.model_id for pick in report.recommendations if pick.title == "Most accurate"),
                                  None),
            "rendered_at": datetime.now(UTC).isoformat(timespec="seconds")}


def render_run_report(url: str, dag_id: str, run_id: str, out_dir: Path, refusal: str | None = None,
                      summary: dict | None = None) -> Path:
    """Render the report of one run from the results DB into out_dir; return the HTML file."""
    records = run_experiments(url, dag_id, run_id)
    previous = comparable_previous_run(url, dag_id, run_id)
    report = build_report(dag_id, run_id, records, evaluation_curves(url, [r.experiment_id for r in records]),
                          previous.run_id, run_experiments(url, dag_id, previous.run_id) if previous.run_id else [],
                          run_estimate(url, dag_id, run_id), refusal, previous.note)
    report = dataclasses.replace(report, exports={row["model_id"]: row for row in run_exports(url, dag_id, run_id)})
    return render(report, out_dir, summary)


def render_again(url: str, dag_id: str, run_id: str, out_dir: Path) -> Path:
    """Render a run's report again (after an export adds its models), keeping what the report task
    knew (tier, status, trigger parameters, refusal) from the summary.json it wrote."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    return render_run_report(url, dag_id, run_id, out_dir, summary.get("refusal"), summary)
