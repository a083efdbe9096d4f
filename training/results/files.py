"""The experiment's files on disk, written whole or not at all, and read with an error that names
the file: result.json and trained.json. A file that cannot be read is set aside, never deleted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path


def write_json(path: Path, data) -> None:
    """Whole or absent: a kill or a full disk mid-write never leaves half a file under this name."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(data, indent=2, default=str))
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


def read_result_file(path: Path) -> dict:
    """A result record (result.json, trained.json); ValueError naming the file and what is wrong."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a result record (a JSON object)")
    return record


def set_aside_file(path: Path, why: str) -> Path:
    """Rename a file that must not be used to <name>.unreadable-<UTC time> beside it, saying so."""
    target = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    path.rename(target)
    print(f"set aside {path} as {target.name}: {why}")
    return target
