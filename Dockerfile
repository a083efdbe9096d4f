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
# The dependencies first, read from pyproject.toml and pinned by the lock (the tree the tests run
# on, celery and kubernetes included; on PyPI torch==2.13.0 for Linux is the CUDA build the GPU
# workers need): a layer built again only when they change, not at every edit of the source.
COPY pyproject.toml requirements.lock ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["celery"] + p["optional-dependencies"]["kubernetes"]))' \
        > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY training ./training
COPY plugins ./plugins
COPY devstack ./devstack
COPY dags ./dags
COPY sql ./sql
RUN pip install --no-deps -c requirements.lock ".[celery,kubernetes]"
COPY deploy/entrypoint.sh /usr/local/bin/sweep-entrypoint

USER airflow
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/code-sweep/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/code-sweep/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    SWEEP_SQL_DIR=/opt/code-sweep/sql
# Every compose service but airflow-init (which runs bash) is an airflow subcommand (`command:
# api-server`, `celery worker`), as in Airflow's own image; the entrypoint also passes a container
# stop on to the experiments training in it (deploy/entrypoint.sh).
ENTRYPOINT ["/usr/local/bin/sweep-entrypoint"]
