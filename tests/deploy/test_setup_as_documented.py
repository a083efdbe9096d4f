"""The documented set-up commands, run as written against a Postgres that checks passwords: the
README's `db migrate` and `db add-user` (logging in afterwards with the password, over TCP), and
the compose file's airflow-init script itself, read from docker-compose.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.deploy.password_postgres import password_postgres
from tests.deploy.test_compose import compose_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def training_cli(*arguments: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *arguments], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def can_log_in(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT 1")).scalar() == 1
    except sa.exc.OperationalError as error:
        assert "password authentication failed" in str(error), error
        return False
    finally:
        engine.dispose()


def test_add_user_gives_a_login_that_works_with_its_password(tmp_path):
    with password_postgres("admin", "admin-secret") as (host, port, _):
        server = f"postgresql://admin:admin-secret@{host}:{port}"
        engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE sweep"))
        engine.dispose()
        admin = {"SWEEP_DATABASE_URL": f"{server}/sweep"}
        migrated = training_cli("db", "migrate", env=admin)
        assert migrated.returncode == 0, migrated.stderr
        no_password = training_cli("db", "add-user", "--name", "alice", "--role", "analyst",
                                   env={**admin, "SWEEP_USER_PASSWORD": ""})
        assert no_password.returncode == 2 and "SWEEP_USER_PASSWORD is empty" in no_password.stderr
        # The README's command, exactly (the URL through psycopg 3, as the default driver).
        added = training_cli("db", "add-user", "--name", "alice", "--role", "analyst",
                             env={**admin, "SWEEP_USER_PASSWORD": "it's a \"secret\" $1"})
        assert added.returncode == 0, added.stderr
        alice = sa.engine.URL.create("postgresql", "alice", "it's a \"secret\" $1", host, port, "sweep")
        assert can_log_in(alice.render_as_string(hide_password=False))
        wrong = alice.set(password="not it")
        assert not can_log_in(wrong.render_as_string(hide_password=False))
        engine = sa.create_engine(alice)
        with engine.connect() as connection:  # an analyst reads the warehouse and can change nothing
            assert connection.execute(sa.text("SELECT count(*) FROM analytics.tier_summary")).scalar() == 0
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                connection.execute(sa.text("DELETE FROM experiments"))
        engine.dispose()
        again = training_cli("db", "add-user", "--name", "alice", "--role", "analyst",
                             env={**admin, "SWEEP_USER_PASSWORD": "rotated"})
        assert again.returncode == 0, again.stderr  # idempotent: rotates the password
        assert can_log_in(alice.set(password="rotated").render_as_string(hide_password=False))


def test_the_compose_init_script_sets_up_both_databases_and_the_pool(tmp_path):
    """airflow-init's own script from `docker-compose config`, with only the host name `postgres`
    pointed at this machine's server; `psql` is the packaged one, `airflow` and `python` this venv's."""
    services = yaml.safe_load(compose_config(tmp_path).stdout)["services"]
    init = services["airflow-init"]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    password = "test-postgres_password"  # what compose_config put in the env file
    with password_postgres("airflow", password) as (host, port, bin_path):
        engine = sa.create_engine(f"postgresql://airflow:{password}@{host}:{port}/postgres",
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE airflow"))  # what the postgres service's POSTGRES_DB does
        engine.dispose()
        here = f"@{host}:{port}"
        script = init["command"][1].replace("$$", "$").replace("@postgres", here)
        env = {name: str(value).replace("@postgres", here) for name, value in init["environment"].items()}
        env.update(PATH=f"{bin_path}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   AIRFLOW_HOME=str(tmp_path / "airflow"), SWEEP_HOME=str(tmp_path / "sweep"),
                   SWEEP_REPORTS_DIR=str(tmp_path / "reports"), HOME=str(tmp_path))
        completed = subprocess.run([shutil.which("bash"), "-c", script], env=env, cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        pipeline = env["SWEEP_DATABASE_URL"]
        assert pipeline.startswith("postgresql://sweep_pipeline:test-sweep_pipeline_password@")
        engine = sa.create_engine(pipeline)  # the pipeline's own login, with its password, over TCP
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM schema_migrations")).scalar() == len(
                list((REPO_ROOT / "sql" / "migrations").glob("*.sql")))
            assert connection.execute(sa.text("SELECT has_table_privilege('experiments', 'INSERT')")).scalar()
        engine.dispose()
        engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        with engine.connect() as connection:
            slots = connection.execute(sa.text("SELECT slots FROM slot_pool WHERE pool = 'gpu'")).scalar()
        engine.dispose()
        assert slots == int(init["environment"]["GPU_WORKERS"])
        rerun = subprocess.run([shutil.which("bash"), "-c", script], env=env, cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]  # a restarted init must not fail
