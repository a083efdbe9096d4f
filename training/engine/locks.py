"""One run per experiment at a time, on one host and across hosts: an flock on the experiment
folder (the fast path, released by the kernel however the holder ends) and a Postgres advisory
lock every host sees, held on a connection of its own for as long as the experiment runs. Postgres
releases it when that connection ends: the holder exits or is killed, or its host is lost (TCP
keepalives notice within about 25 s)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

HOLDER = """SELECT a.application_name, host(a.client_addr) AS address FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"""


class ExperimentRunning(RuntimeError):
    """Another process is running this experiment (a lost worker and its retry, say)."""


def holder_name() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def experiment_lock(folder: Path):
    """This host's lock: a second run exits at once, naming the holder, touching nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "experiment.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ExperimentRunning(f"experiment {folder.name} is already running ({holder}); this run exits "
                                "without touching its files") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, holder_name().encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def advisory_key(experiment_key: str) -> int:
    """The experiment key as Postgres's 64-bit advisory lock id."""
    return int.from_bytes(hashlib.sha256(f"code-sweep experiment {experiment_key}".encode()).digest()[:8],
                          "big", signed=True)


@contextmanager
def cross_host_lock(database_url: str | None, experiment_key: str, say=print):
    """The lock every host sees, in the results database. Without a database (a CLI run with no
    results DB) or while it cannot be reached, the host's own lock is all there is, and that is said."""
    if not database_url:
        yield
        return
    lock_id = advisory_key(experiment_key)
    engine = sa.create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={
        "application_name": f"code-sweep {experiment_key[:12]} {holder_name()}"[:63],
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3})
    try:
        connection = engine.connect()
    except sa.exc.OperationalError as error:
        say(f"could not reach the results DB for the cross-host experiment lock ({error.orig}); going on with "
            "this host's lock only")
        engine.dispose()
        yield
        return
    try:
        if not connection.execute(sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar():
            unsigned = lock_id & 0xFFFFFFFFFFFFFFFF
            row = connection.execute(sa.text(HOLDER), {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).first()
            holder = f"{row.application_name} from {row.address or 'a local socket'}" if row else "another host"
            raise ExperimentRunning(f"experiment {experiment_key} is already running ({holder}); this run exits "
                                    "without touching its files")
        yield
    finally:
        try:
            connection.close()  # ends the session, and with it the lock
        except sa.exc.SQLAlchemyError:
            pass
        engine.dispose()
