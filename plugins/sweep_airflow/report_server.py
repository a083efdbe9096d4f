"""The reports over HTTP, inside the Airflow api-server and behind its login: an index of every
tier's reports and each run's report, which the report task's "Report" link opens.

Airflow mounts a plugin's FastAPI app without its own authentication, so every route here asks
Airflow's auth manager itself: the caller's token (the UI's session cookie, or a bearer token)
must be allowed to read the DAG's runs.
"""

from __future__ import annotations

import html
from pathlib import Path

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from training.settings import Storage, inside, safe_name

URL_PREFIX = "/sweep-reports"
REPORT_FILES = {"report.html": "text/html; charset=utf-8", "report.md": "text/markdown; charset=utf-8"}
# A report is a document, never a program: no scripts, nothing fetched, styles and charts inline.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
}

app = FastAPI(title="Sweep reports", docs_url=None, redoc_url=None, openapi_url=None)


def reports_root() -> Path:
    return Path(Storage.from_environment().reports_dir)


@app.get("/{dag_id}/{run_id}/{name}", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def report_file(dag_id: str, run_id: str, name: str) -> FileResponse:
    """report.html or report.md of one run: names from a fixed list, folders through safe_name, and
    only a regular file whose resolved path (symlinks followed) stays inside the reports folder."""
    if name not in REPORT_FILES:
        raise HTTPException(404, f"{name} is not a report file; there are {sorted(REPORT_FILES)}")
    path = inside(reports_root(), Storage.from_environment().report_dir(dag_id, run_id) / name)
    if path is None or not path.is_file():
        raise HTTPException(404, f"no report for {dag_id} run {run_id}: the report task writes it")
    return FileResponse(path, media_type=REPORT_FILES[name], headers=SECURITY_HEADERS)


@app.get("/", response_class=HTMLResponse)
def index(user: GetUserDep) -> HTMLResponse:
    """Every tier's reports, newest first, linked; only DAGs the caller may read are listed."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager, sections, root = get_auth_manager(), [], reports_root()
    for dag_dir in sorted(p for p in root.glob("*") if p.is_dir() and not p.is_symlink()):
        if not manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                         details=DagDetails(id=dag_dir.name), user=user):
            continue
        runs = sorted((p for p in dag_dir.glob("*/report.html") if inside(root, p) and p.is_file()),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        items = "".join(f'<li><a href="{html.escape(dag_dir.name)}/{html.escape(p.parent.name)}/report.html">'
                        f"{html.escape(p.parent.name)}</a></li>" for p in runs)
        sections.append(f"<h2>{html.escape(dag_dir.name)}</h2><ul>{items}</ul>")
    body = "".join(sections) or "<p>No reports yet: each tier's report task writes one per run.</p>"
    return HTMLResponse(f"<!doctype html><title>Sweep reports</title><h1>Sweep reports</h1>{body}",
                        headers=SECURITY_HEADERS)


def report_url(base_url: str, dag_id: str, run_id: str) -> str:
    """Where the report of a run is served (the report task's extra link)."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/{safe_name(dag_id)}/{safe_name(run_id)}/report.html"
