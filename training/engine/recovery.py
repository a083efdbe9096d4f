"""What an attempt finds on disk from the attempts before it, and how a failure is named: a
result file that may be unreadable (set aside, never deleted), the attempt ledger's last outcome,
and a full disk, which torch's own save does not call by its name."""

from __future__ import annotations

import errno
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from training.results.files import read_result_file, set_aside_file, write_json
from training.results.record import ExperimentResult

RESULT_FILE = "result.json"  # beside best/: the experiment's finished result
NEARLY_FULL_BYTES = 64 << 20  # below this much free space, a failed save is taken for a full disk


def readable_record(path: Path, then: str) -> ExperimentResult | None:
    """The result record in path (result.json, trained.json), if there and readable. An unreadable
    one (truncated, say) is set aside under another name, never deleted, saying what happens then."""
    if not path.is_file():
        return None
    try:
        return ExperimentResult.from_dict(read_result_file(path))
    except (ValueError, TypeError, KeyError) as error:
        set_aside_file(path, f"{error}; {then}")
        return None


def finished_result(output_dir: Path) -> ExperimentResult | None:
    """The result an earlier attempt wrote, if readable; else the experiment is finished again."""
    return readable_record(output_dir / RESULT_FILE, "finishing the experiment again")


def close_ledger(folder: Path, outcome: str, started_at: datetime | None = None) -> list[dict]:
    """Give the last attempt its outcome (once the result file that says so is written, or when
    the attempt failed) and return every attempt. With started_at (a failed attempt), an attempt
    that failed before training opened its entry gets one of its own, so the ledger says what
    happened. An unreadable ledger, or one that cannot be written (a full disk), must not hide the
    outcome being recorded: it is said, not raised."""
    path = folder / "attempts.json"
    try:
        attempts = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError) as error:
        print(f"could not read {path}: {error}")
        return []
    if attempts and attempts[-1]["outcome"] is not None and started_at is not None:
        attempts.append({"attempt": len(attempts) + 1, "started_at": started_at.isoformat(),
                         "seconds": round((datetime.now(UTC) - started_at).total_seconds(), 3), "gpu_count": 0,
                         "resumed_from_step": None, "last_step": 0, "outcome": None})
    if attempts and attempts[-1]["outcome"] is None:
        attempts[-1]["outcome"] = outcome
        try:
            write_json(path, attempts)
        except OSError as error:
            print(f"could not update {path}: {error}")
    return attempts


class DiskFull(OSError):
    """Out of space while writing an experiment's files: retryable once space is freed."""


def disk_full(error: BaseException, folder: Path) -> DiskFull | None:
    """A write that failed for want of space, named as such. Python says ENOSPC; safetensors says
    "No space left on device" inside its own error; torch's save says only "[enforce fail at
    inline_container.cc] ... unexpected pos", so that one counts when the disk is nearly full."""
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    said = " ".join(str(e) for e in chain)
    if not (any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)
            or "No space left on device" in said or "os error 28" in said
            or (("inline_container" in said or "PytorchStreamWriter" in said)
                and free is not None and free < NEARLY_FULL_BYTES)):
        return None
    shown = "unknown" if free is None else f"{free / 2**20:.1f} MiB"
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    return DiskFull(f"the disk is full: writing under {folder} failed with {shown} free ({type(error).__name__}: "
                    f"{first_line}). Free space there, or point SWEEP_HOME at a larger disk; a retry resumes from "
                    "the last full save")
