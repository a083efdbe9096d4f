"""What the scheduler calls when a sweep run ends: the run's note links its report and, when the
run failed, says why in the task's own words, so both are on the run's page (where the UI opens
after Trigger) and not only inside a task's log.

A task that fails a run for a reason the user must act on (the start task refusing a param or a
budget, the verify task naming the experiments that failed) pushes that reason as the XCom
`refusal` before it fails; the first of them, in run order, goes in the note. A note a person
wrote is never replaced.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

from sweep_airflow.operators import REFUSAL_KEY

NOTE_LIMIT = 1000  # the dag_run_note column's length
REASON_TASKS = ("start", "verify")  # in run order: the first refusal is the cause

log = logging.getLogger(__name__)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    write_note(dag_run, failed=True)


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    write_note(dag_run, failed=False)


def write_note(dag_run, failed: bool) -> None:
    from sqlalchemy.orm.exc import DetachedInstanceError

    if not dag_run.dag_id.startswith("sweep_"):
        return
    try:
        if dag_run.note:
            return
    except DetachedInstanceError:
        # `airflow dags test` (make demo) ends its run outside any session: there is no note to
        # write there, and its traceback used to follow every failed demo run.
        log.info("%s %s: no session to write the run's note in", dag_run.dag_id, dag_run.run_id)
        return
    try:
        reason = refusal(dag_run) if failed else None
        link = report_link(dag_run)
        if reason and len(reason) + len(link) > NOTE_LIMIT:
            reason = reason[:NOTE_LIMIT - len(link) - 1] + "…"
        note = "\n\n".join(part for part in (reason, link) if part)
        if note:
            dag_run.note = note
    except Exception:  # a note is a courtesy: it must never stop the scheduler
        log.exception("could not write the note of %s %s", dag_run.dag_id, dag_run.run_id)


def report_link(dag_run) -> str:
    """A Markdown link to the run's report, when its report task wrote one."""
    from airflow.configuration import conf

    from sweep_airflow.report_server import report_url
    from training.report.published import report_file
    from training.settings import Storage

    if report_file(Storage.from_environment(), dag_run.dag_id, dag_run.run_id, "report.html") is None:
        return ""
    url = report_url(conf.get("api", "base_url", fallback="http://localhost:8080"), dag_run.dag_id, dag_run.run_id)
    return f"[Report]({url})"


def refusal(dag_run) -> str | None:
    from airflow.models.xcom import XComModel
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key=REFUSAL_KEY,
                                              task_ids=list(REASON_TASKS))).all()
    by_task = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return next((str(by_task[task]) for task in REASON_TASKS if by_task.get(task)), None)
