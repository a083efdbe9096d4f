"""The run-note listener outside the scheduler: `airflow dags test` (make demo) ends a run whose
DagRun is detached from any session, and reading its note raised DetachedInstanceError, printed as
a traceback after every failed demo run."""

from __future__ import annotations

import logging

from sqlalchemy.orm.exc import DetachedInstanceError

from sweep_airflow.listeners import on_dag_run_failed


class DetachedRun:
    dag_id, run_id = "sweep_small", "manual__demo"

    @property
    def note(self):
        raise DetachedInstanceError("Parent instance <DagRun> is not bound to a Session")

    @note.setter
    def note(self, value):
        raise AssertionError("no note may be written without a session")


def test_a_detached_run_gets_no_note_and_no_traceback(caplog):
    with caplog.at_level(logging.INFO, logger="sweep_airflow.listeners"):
        on_dag_run_failed(DetachedRun(), msg="task failure")
    assert "no session to write the run's note in" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
