# The project's image: Airflow, the training package and a CUDA build of torch (PyPI's default for
# torch 2.13.0 on x86_64). One image for every Airflow component and every GPU worker.
# The base is an argument so that a machine without a registry can build a local equivalent
# (make compose-check does); its default is the official image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    SWEEP_HOME=/data/sweep \
    SWEEP_REPORTS_DIR=/data/reports

RUN apt-get update \
    && apt-get install -y --no-install-recommends git curl postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 airflow \
    && mkdir -p /opt/airflow /data/sweep /data/reports \
    && chown -R airflow /opt/airflow /data

WORKDIR /opt/code-sweep
COPY pyproject.toml requirements.lock README.md ./
COPY training ./training
COPY plugins ./plugins
COPY devstack ./devstack
COPY dags ./dags
COPY sql ./sql
# The same pinned tree the tests run on (celery included); on PyPI torch==2.13.0 for Linux is the
# CUDA build the GPU workers need.
RUN pip install -c requirements.lock ".[celery,kubernetes]"

USER airflow
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/code-sweep/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/code-sweep/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    SWEEP_SQL_DIR=/opt/code-sweep/sql
# Every compose service but airflow-init (which runs bash) is an airflow subcommand: `command:
# api-server`, `celery worker`, as in Airflow's own image.
ENTRYPOINT ["airflow"]
