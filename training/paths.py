"""Where the project keeps its state on disk; every location can be moved by an environment variable."""

from __future__ import annotations

import os
import re
from pathlib import Path


def sweep_home() -> Path:
    """Root of generated state (database, data, stand-in models, checkpoints): $SWEEP_HOME or ./.sweep."""
    return Path(os.environ.get("SWEEP_HOME") or Path.cwd() / ".sweep").resolve()


def experiments_root() -> Path:
    return Path(os.environ.get("SWEEP_EXPERIMENTS_DIR") or sweep_home() / "experiments")


def reports_root() -> Path:
    return Path(os.environ.get("SWEEP_REPORTS_DIR") or sweep_home() / "reports")


def model_root() -> Path | None:
    """A local mirror of the hub: <root>/<hub id> holds a model folder (air-gapped clusters, stand-ins)."""
    root = os.environ.get("SWEEP_MODEL_ROOT")
    return Path(root) if root else None


def safe_name(text: str) -> str:
    """A run id or model id as a single path component (run ids carry ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"
