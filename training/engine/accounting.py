"""What a run cost and what exactly it ran: the attempt ledger (seconds and GPU-seconds over every
try), peak memory, sampled GPU utilisation, and fingerprints of the model and the code."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
WHOLE_FILE_HASH_LIMIT_BYTES = 64 << 20  # above this, hash a weight file's header and size, not its GBs


def now() -> str:
    return datetime.now(UTC).isoformat()


class AttemptLedger:
    """attempts.json beside the checkpoints: one entry per try of the same experiment.

    Written at every log and save, so a try killed without warning (SIGKILL, a lost machine) still
    counts the time it ran, up to its last heartbeat.
    """

    def __init__(self, folder: Path, gpu_count: int):
        self.path = folder / "attempts.json"
        self.attempts = json.loads(self.path.read_text()) if self.path.is_file() else []
        for attempt in self.attempts:
            if attempt["outcome"] is None:
                attempt["outcome"] = "interrupted"
        self.current = {"attempt": len(self.attempts) + 1, "started_at": now(), "seconds": 0.0,
                        "gpu_count": gpu_count, "resumed_from_step": None, "last_step": 0, "outcome": None}
        self.attempts.append(self.current)
        self._started = time.monotonic()
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".tmp")
        staging.write_text(json.dumps(self.attempts, indent=2))
        staging.replace(self.path)

    def beat(self, step: int | None = None) -> None:
        self.current["seconds"] = round(time.monotonic() - self._started, 3)
        if step is not None:
            self.current["last_step"] = step
        self.write()

    def finish(self, outcome: str) -> None:
        self.current["outcome"] = outcome
        self.beat()

    @property
    def total_seconds(self) -> float:
        return sum(a["seconds"] for a in self.attempts)

    @property
    def total_gpu_seconds(self) -> float:
        return sum(a["seconds"] * a["gpu_count"] for a in self.attempts)


def peak_memory_bytes(on_gpu: bool) -> int:
    """Peak GPU memory allocated by this process, or its peak resident host memory on CPU."""
    if on_gpu:
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class UtilisationSampler:
    """Samples the GPU's utilisation through NVML every few seconds; None where NVML is absent."""

    def __init__(self, interval_seconds: float = 2.0):
        self.interval_seconds, self.samples = interval_seconds, []
        self._stop = threading.Event()
        self._handle = self._nvml_handle()
        self._thread = threading.Thread(target=self._run, daemon=True) if self._handle else None

    @staticmethod
    def _nvml_handle():
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
            return pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
        except Exception:  # no NVML library, no driver, no GPU: utilisation is unknown, not zero
            return None

    def _run(self):
        import pynvml

        while not self._stop.wait(self.interval_seconds):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def mean_percent(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def model_fingerprint(source: str, config) -> str:
    """The hub revision the model came from, or a hash of a local model folder."""
    folder = Path(source)
    if not folder.is_dir():
        return getattr(config, "_commit_hash", None) or "unknown-revision"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(WHOLE_FILE_HASH_LIMIT_BYTES if size <= WHOLE_FILE_HASH_LIMIT_BYTES else 1 << 20))
    return "sha256:" + digest.hexdigest()[:16]


def code_version() -> str:
    """The git commit of this checkout (with -dirty for local changes), else the package version."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "code-sweep " + version("code-sweep")
        except PackageNotFoundError:
            return "unknown"
