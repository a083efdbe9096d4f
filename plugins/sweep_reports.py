"""Registers the sweep reports with Airflow: the app that serves them inside the api-server, an
entry in the UI's navigation that opens their index, and the scheduler's listener that writes why
a run failed as its note."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from sweep_airflow import listeners as run_notes
from sweep_airflow.report_server import URL_PREFIX, app


class SweepReportsPlugin(AirflowPlugin):
    name = "sweep_reports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Sweep reports"}]
    external_views = [{"name": "Sweep reports", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "url_route": "sweep_reports"}]
    listeners = [run_notes]
