"""The run report: typed rows read from Postgres, numbers computed here, Jinja renders
Markdown and a self-contained HTML file under reports/<dag>/<run>/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from training.paths import reports_root, safe_name
from training.results import run_experiments

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class ExperimentRow:
    model_id: str
    learning_rate: float
    batch_size: int
    num_epochs: int
    weight_decay: float
    gradient_accumulation_steps: int
    validation_f1: float | None
    test_f1: float | None
    test_precision: float | None
    test_recall: float | None
    best_step: int | None
    steps_run: int | None
    stop_reason: str
    gpu_hours: float
    wall_seconds: float | None
    device: str | None
    is_stand_in: bool
    error: str | None

    @classmethod
    def from_record(cls, record: dict) -> ExperimentRow:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})

    @property
    def succeeded(self) -> bool:
        return self.stop_reason in ("completed", "early_stopped") and self.validation_f1 is not None


@dataclass(frozen=True)
class ModelSection:
    model_id: str
    experiments: list[ExperimentRow]
    best: ExperimentRow | None = field(default=None)


@dataclass(frozen=True)
class RunReport:
    dag_id: str
    run_id: str
    models: list[ModelSection]
    experiment_count: int
    failed_count: int
    gpu_hours: float
    any_stand_in: bool


def best_of(experiments: list[ExperimentRow]) -> ExperimentRow | None:
    """Validation F1 selects (test F1 is only reported); ties go to the cheaper run."""
    candidates = [e for e in experiments if e.succeeded]
    return max(candidates, key=lambda e: (e.validation_f1, -(e.wall_seconds or 0)), default=None)


def build_report(dag_id: str, run_id: str, records: list[dict]) -> RunReport:
    rows = [ExperimentRow.from_record(record) for record in records]
    sections = []
    for model_id in sorted({row.model_id for row in rows}):
        experiments = [row for row in rows if row.model_id == model_id]
        sections.append(ModelSection(model_id, experiments, best_of(experiments)))
    return RunReport(dag_id, run_id, sections, len(rows), sum(not row.succeeded for row in rows),
                     sum(row.gpu_hours for row in rows), any(row.is_stand_in for row in rows))


def environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda value: "–" if value is None else f"{value:.3f}"
    return env


def render(report: RunReport, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(environment(False).get_template("report.md.j2").render(report=report))
    html_path = out_dir / "report.html"
    html_path.write_text(environment(True).get_template("report.html.j2").render(report=report))
    return html_path


def render_run_report(url: str, dag_id: str, run_id: str, root: Path | None = None) -> Path:
    report = build_report(dag_id, run_id, run_experiments(url, dag_id, run_id))
    return render(report, (root or reports_root()) / safe_name(dag_id) / safe_name(run_id))
