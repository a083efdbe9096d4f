"""The one way into a Postgres database: an engine made, used and disposed of in one block. Every
module that reads or writes the results database (store, history, the live rows, the schema
tooling) connects through here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def engine_for(url: str, autocommit: bool = False) -> sa.Engine:
    """An engine for a caller that keeps it (the live rows of a training run); pre-pinged, so a
    server that restarted in between is reconnected."""
    return sa.create_engine(url, pool_pre_ping=True, **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}))


@contextmanager
def connect(url: str, *, write: bool = False, autocommit: bool = False) -> Iterator[sa.Connection]:
    """A connection for one block: in a transaction committed at its end with write, each statement
    on its own with autocommit (CREATE DATABASE, roles), else read-only use."""
    engine = engine_for(url, autocommit)
    try:
        with engine.begin() if write else engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
