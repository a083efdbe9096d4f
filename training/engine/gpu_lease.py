"""Lease one GPU of a multi-GPU host to one experiment: a lock file per GPU index, held with
flock by the worker and inherited by the training process. The kernel drops a lock when the last
process holding it ends, however it ends, so a crashed task never keeps a GPU.

Airflow cannot pin a task to a GPU; with one Celery worker per GPU (CUDA_VISIBLE_DEVICES set for
the worker) no lease is needed and none is taken.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

from training.settings import setting


def host_gpu_count() -> int:
    """GPUs on this host: $SWEEP_GPU_COUNT if set (also how tests simulate GPUs), else nvidia-smi."""
    if count := setting("SWEEP_GPU_COUNT"):
        return int(count)
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


class GpuLease:
    """`with GpuLease(n) as lease:` waits for a free GPU index; lease.index and lease.fd inside."""

    def __init__(self, gpu_count: int, directory: Path, poll_seconds: float = 2.0):
        self.gpu_count, self.poll_seconds = gpu_count, poll_seconds
        self.directory = Path(directory)
        self.index = self.fd = None

    def try_acquire(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        for index in range(self.gpu_count):
            fd = os.open(self.directory / f"gpu-{index}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
            self.index, self.fd = index, fd
            return True
        return False

    def __enter__(self) -> GpuLease:
        while not self.try_acquire():
            time.sleep(self.poll_seconds)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
