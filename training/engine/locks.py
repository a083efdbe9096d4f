"""One run per experiment at a time, on one host and across hosts: an flock on the experiment
folder (the fast path, released by the kernel however the holder ends) and a Postgres advisory
lock every host sees, held on a connection of its own for as long as the experiment runs. Postgres
releases it when that connection ends: the holder exits or is killed, or its host is lost (TCP
keepalives notice within about 25 s). A Postgres restart ends it too, so a keeper thread checks the
session and, once the server is back, takes the lock again: a retry elsewhere after the restart is
still refused. If a retry elsewhere took it first, this run stops at its next training step without
saving (the trainer calls the holding's check()), and the other goes on: one writer per experiment."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import threading
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


def take(connection: sa.Connection, lock_id: int) -> bool:
    return bool(connection.execute(sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar())


def close_quietly(connection: sa.Connection | None) -> None:
    """Close a lock's connection, ending its session (and the lock), whatever state it is in."""
    if connection is not None:
        try:
            connection.close()
        except sa.exc.SQLAlchemyError:
            pass


def holder_of(connection, lock_id: int) -> str:
    unsigned = lock_id & 0xFFFFFFFFFFFFFFFF
    row = connection.execute(sa.text(HOLDER), {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).first()
    return f"{row.application_name} from {row.address or 'a local socket'}" if row else "another host"


class LockKeeper(threading.Thread):
    """Checks the lock's session every check_seconds while the experiment runs. When the session is
    gone (Postgres restarted, the connection dropped), it reconnects as soon as the server answers
    and takes the lock again. If another process took it in the meantime, it says so and stops
    checking, and check() raises from then on: the run stops, the new holder goes on."""

    def __init__(self, engine: sa.Engine, connection: sa.Connection, lock_id: int, experiment_key: str, say,
                 check_seconds: float):
        super().__init__(daemon=True, name=f"cross-host lock {experiment_key[:12]}")
        self.engine, self.connection, self.lock_id, self.key = engine, connection, lock_id, experiment_key
        self.say, self.check_seconds = say, check_seconds
        self.stopped, self.lost_to = threading.Event(), None

    def run(self):
        held = True
        while not self.stopped.wait(self.check_seconds):
            if held and self.alive():
                continue
            held = self.retake()
            if self.lost_to is not None:
                return

    def alive(self) -> bool:
        try:
            self.connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            self.close()
            return False

    def retake(self) -> bool:
        """True once the lock is held again; False while the server cannot be reached."""
        try:
            self.connection = self.engine.connect()
            if take(self.connection, self.lock_id):
                self.say(f"the results DB came back: holding the cross-host lock of experiment {self.key} again")
                return True
            self.lost_to = holder_of(self.connection, self.lock_id)
            self.say(f"warning: while the results DB was away, another process took experiment {self.key}'s "
                     f"cross-host lock ({self.lost_to}); this run stops at its next step without saving")
            self.close()
            return False
        except sa.exc.SQLAlchemyError:
            self.close()
            return False

    def close(self):
        close_quietly(self.connection)
        self.connection = None

    def check(self) -> None:
        """Raises ExperimentRunning once another process holds the lock; called at every step."""
        if self.lost_to is not None:
            raise ExperimentRunning(f"experiment {self.key}'s cross-host lock was taken by {self.lost_to} while the "
                                    "results DB was away; this run stops here without saving, the other goes on")


class Unwatched:
    """The holding when there is no cross-host lock (no results DB, or it could not be reached)."""

    lost_to = None

    def check(self) -> None:
        pass


@contextmanager
def cross_host_lock(database_url: str | None, experiment_key: str, say=print, check_seconds: float = 15.0):
    """The lock every host sees, in the results database; yields the holding, whose check() raises
    once the lock is lost to another process. Without a database (a CLI run with no results DB) or
    while it cannot be reached, the host's own lock is all there is, and that is said."""
    if not database_url:
        yield Unwatched()
        return
    lock_id = advisory_key(experiment_key)
    engine = sa.create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={
        "application_name": f"code-sweep {experiment_key[:12]} {holder_name()}"[:63],
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
        "connect_timeout": 10})
    try:
        connection = engine.connect()
    except sa.exc.OperationalError as error:
        say(f"could not reach the results DB for the cross-host experiment lock ({error.orig}); going on with "
            "this host's lock only")
        engine.dispose()
        yield Unwatched()
        return
    keeper = None
    try:
        if not take(connection, lock_id):
            holder = holder_of(connection, lock_id)
            raise ExperimentRunning(f"experiment {experiment_key} is already running ({holder}); this run exits "
                                    "without touching its files")
        keeper = LockKeeper(engine, connection, lock_id, experiment_key, say, check_seconds)
        keeper.start()
        yield keeper
    finally:
        if keeper is not None:  # the keeper owns the connection (it may have reconnected) once started
            keeper.stopped.set()
            keeper.join(timeout=check_seconds + 15)
            connection = keeper.connection
        close_quietly(connection)  # ends the session, and with it the lock
        engine.dispose()
