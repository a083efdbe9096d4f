"""What the scheduler calls when a sweep run fails: the run's note says why, in the task's own
words, so the reason is on the run itself and not only inside a task's log.

A task that fails a run for a reason the user must act on (the start task refusing a param or a
budget, the verify task naming the experiments that failed) pushes that reason as the XCom
`refusal` before it fails; the first of them, in run order, becomes the note. A note a person
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
    if not dag_run.dag_id.startswith("sweep_") or dag_run.note:
        return
    try:
        reason = refusal(dag_run)
        if reason:
            dag_run.note = reason if len(reason) <= NOTE_LIMIT else reason[:NOTE_LIMIT - 1] + "…"
    except Exception:  # a note is a courtesy: it must never stop the scheduler
        log.exception("could not write the reason on %s %s as its note", dag_run.dag_id, dag_run.run_id)


def refusal(dag_run) -> str | None:
    from airflow.models.xcom import XComModel
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key=REFUSAL_KEY,
                                              task_ids=list(REASON_TASKS))).all()
    by_task = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return next((str(by_task[task]) for task in REASON_TASKS if by_task.get(task)), None)
