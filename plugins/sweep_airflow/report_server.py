"""The reports over HTTP, inside the Airflow api-server and behind its login: an index of every
tier's reports and each run's report, which the report task's "Report" link opens.

Airflow mounts a plugin's FastAPI app without its own authentication, so every route here asks
Airflow's auth manager itself: the caller's token (the UI's session cookie, or a bearer token)
must be allowed to read the DAG's runs.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from training.report.published import published_runs, report_file
from training.settings import Storage, safe_name

URL_PREFIX = "/sweep-reports"
REPORT_FILES = {"report.html": "text/html; charset=utf-8", "report.md": "text/markdown; charset=utf-8"}
# A report is a document, never a program: no scripts, nothing fetched, styles and charts inline.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
}

app = FastAPI(title="Sweep reports", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(HTTPException)
async def signed_out_to_the_login(request: Request, error: HTTPException):
    """A browser that is not signed in goes to the login page and comes back here after it; a
    script (no text/html in its Accept header) gets the status and its JSON, as before."""
    if error.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return await http_exception_handler(request, error)


@app.get("/{dag_id}/{run_id}/{name}", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def report(dag_id: str, run_id: str, name: str) -> Response:
    """report.html or report.md of one run, from the artifact store (or the local reports folder
    where none is set): names from a fixed list, folders through safe_name, and locally only a
    regular file whose resolved path (symlinks followed) stays inside the reports folder."""
    if name not in REPORT_FILES:
        raise HTTPException(404, f"{name} is not a report file; there are {sorted(REPORT_FILES)}")
    content = report_file(Storage.from_environment(), dag_id, run_id, name)
    if content is None:
        raise HTTPException(404, f"no report for {dag_id} run {run_id}: the report task writes it")
    return Response(content, media_type=REPORT_FILES[name], headers=SECURITY_HEADERS)


@app.get("/", response_class=HTMLResponse)
def index(user: GetUserDep) -> HTMLResponse:
    """One row per run, newest first, of the DAGs the caller may read: tier, date, budget, dataset,
    state, what it chose, and links to the report and to the run in the UI."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager, rows = get_auth_manager(), []
    for dag_folder, run_folder, summary in published_runs(Storage.from_environment()):
        if manager.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                     details=DagDetails(id=dag_folder), user=user):
            rows.append(run_summary(dag_folder, run_folder, summary))
    rows.sort(key=lambda row: row["rendered_at"], reverse=True)
    body = (f"<table><tr><th>tier</th><th>run</th><th>date (UTC)</th><th>budget</th><th>dataset</th><th>state</th>"
            f"<th>experiments</th><th>most accurate</th><th>links</th></tr>{''.join(map(index_row, rows))}</table>"
            if rows else "<p>No reports yet: each tier's report task writes one per run.</p>")
    return HTMLResponse(INDEX_PAGE.format(body=body), headers=SECURITY_HEADERS)


def run_summary(dag_folder: str, run_folder: str, summary: dict) -> dict:
    """The report task's summary.json of a run; a report from before it existed gets its folder's
    name (and, locally, the file's time) only."""
    return {"dag_id": dag_folder, "run_id": run_folder, "params": {}, "rendered_at": "", **summary,
            "href": f"{dag_folder}/{run_folder}/report.html"}


def index_row(row: dict) -> str:
    def cell(value) -> str:
        return f"<td>{html.escape('–' if value in (None, '') else str(value))}</td>"

    params, state = row.get("params") or {}, str(row.get("status") or "–")
    date = str(row["rendered_at"]).replace("T", " ")[:16]
    dataset = params.get("dataset") or ("the plan's" if params else None)
    best = row.get("most_accurate")
    run_page = f"../dags/{quote(row['dag_id'], safe='')}/runs/{quote(row['run_id'], safe='')}"
    links = (f'<a href="{html.escape(row["href"])}">report</a> · '
             f'<a href="{html.escape(row["href"].removesuffix(".html") + ".md")}">Markdown</a> · '
             f'<a href="{html.escape(run_page)}">run</a>')
    return (f"<tr>{cell(row.get('tier') or row['dag_id'].removeprefix('sweep_'))}"
            f'<td><a href="{html.escape(row["href"])}">{html.escape(row["run_id"])}</a></td>'
            f"{cell(date)}{cell(params.get('budget'))}{cell(dataset)}"
            f'<td><span class="state {html.escape(state)}">{html.escape(state)}</span></td>'
            f"{cell(row.get('experiments'))}{cell(best)}<td>{links}</td></tr>")


INDEX_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sweep reports</title><style>
body {{ font: 14px/1.5 system-ui, sans-serif; margin: 1.5rem 2rem; color: #1d2433; background: #f7f8fa; }}
h1 {{ font-size: 1.4rem; font-weight: 600; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde2ea; }}
th, td {{ text-align: left; padding: 0.45rem 0.7rem; border-bottom: 1px solid #e6e9ef; }}
th {{ background: #eef1f6; font-weight: 600; }}
a {{ color: #0a58ca; text-decoration: none; }} a:hover {{ text-decoration: underline; }}
.state {{ padding: 0.1rem 0.5rem; border-radius: 0.6rem; font-size: 0.85rem; background: #e6e9ef; }}
.state.success {{ background: #d7f0dc; color: #145c2a; }} .state.failed {{ background: #fbd9d9; color: #8a1c1c; }}
.state.refused {{ background: #fde8c8; color: #7a4a00; }}
</style></head><body><h1>Sweep reports</h1>
<p>One row per run, newest first. The state is the report task's: refused runs stopped before any training.</p>
{body}</body></html>"""


def report_url(base_url: str, dag_id: str, run_id: str) -> str:
    """Where the report of a run is served (the report task's extra link)."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/{safe_name(dag_id)}/{safe_name(run_id)}/report.html"
