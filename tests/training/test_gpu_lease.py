"""GPU leasing on a multi-GPU host, simulated with SWEEP_GPU_COUNT: one experiment per GPU, a
waiting experiment gets the first GPU freed, and a crashed holder frees its GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from training.engine.gpu_lease import GpuLease

HOLDER = """
import sys, time
from pathlib import Path
from training.engine.gpu_lease import GpuLease
with GpuLease(int(sys.argv[1]), poll_seconds=0.05, directory=Path(sys.argv[2])) as lease:
    print(lease.index, flush=True)
    time.sleep(600)
"""


def hold(tmp_path, gpu_count=2) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(gpu_count), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline())


def test_two_experiments_never_share_a_gpu_and_a_crash_frees_one(tmp_path):
    first, first_index = hold(tmp_path)
    second, second_index = hold(tmp_path)
    try:
        assert {first_index, second_index} == {0, 1}
        assert not GpuLease(2, directory=tmp_path).try_acquire()  # both taken
        os.kill(first.pid, signal.SIGKILL)  # a crashed task: no cleanup of its own
        first.wait()
        with GpuLease(2, poll_seconds=0.05, directory=tmp_path) as lease:
            assert lease.index == first_index
    finally:
        for process in (first, second):
            process.kill()
            process.wait()


def test_a_waiting_experiment_gets_the_gpu_when_it_is_released(tmp_path):
    holder = GpuLease(1, directory=tmp_path)
    assert holder.try_acquire() and holder.index == 0
    waiter, started = None, time.monotonic()
    try:
        waiter = subprocess.Popen([sys.executable, "-c", HOLDER, "1", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting: its lease has not printed an index
        holder.__exit__(None, None, None)
        assert int(waiter.stdout.readline()) == 0
        assert time.monotonic() - started >= 1.0
    finally:
        if waiter:
            waiter.kill()
            waiter.wait()


def test_the_training_process_holds_the_lease_too(tmp_path, monkeypatch):
    """The lock is inherited by the child, so the GPU stays leased as long as training runs."""
    lease = GpuLease(1, directory=tmp_path)
    assert lease.try_acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], pass_fds=(lease.fd,))
    try:
        os.close(lease.fd)  # the worker's copy is gone (say the worker died) ...
        lease.fd = None
        assert not GpuLease(1, directory=tmp_path).try_acquire()  # ... the child still holds the GPU
        child.kill()
        child.wait()
        assert GpuLease(1, directory=tmp_path).try_acquire()
    finally:
        child.kill()
        child.wait()
