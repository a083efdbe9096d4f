"""Run one experiment in a child process and stream its log: the operator's only way into
training. Imports nothing heavy, so the Airflow worker stays light."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from training.engine.gpu_lease import GpuLease, host_gpu_count
from training.results.record import ExperimentResult
from training.spec import ExperimentSpec


class ExperimentFailed(RuntimeError):
    def __init__(self, returncode: int, result: ExperimentResult | None):
        self.returncode, self.result = returncode, result
        reason = (result.error if result else None) or f"training process exited with code {returncode}"
        super().__init__(reason)


def run_in_subprocess(spec: ExperimentSpec, work_dir: Path, log: Callable[[str], None],
                      on_start: Callable[[subprocess.Popen], None] | None = None,
                      time_limit_seconds: float | None = None) -> ExperimentResult:
    """Write the spec, lease a GPU if this host has several, run `python -m training
    run-experiment`, stream its log, and return its result record."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work_dir / "spec.json", work_dir / "result.json"
    spec.write(spec_path)
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "training", "run-experiment", "--spec", str(spec_path),
               "--result", str(result_path)]
    if time_limit_seconds:
        command += ["--time-limit-seconds", str(time_limit_seconds)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gpu_count = 0 if "CUDA_VISIBLE_DEVICES" in os.environ else host_gpu_count()
    with GpuLease(gpu_count, Path(spec.runtime().gpu_lock_dir)) if gpu_count else contextlib.nullcontext() as lease:
        pass_fds = ()
        if lease is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(lease.index)
            pass_fds = (lease.fd,)  # the child holds the lock too: it stays leased while training runs
            log(f"leased GPU {lease.index} of {gpu_count}")
        # Its own session, so on_kill can stop the whole group (dataloader workers included).
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1, start_new_session=True, env=env, pass_fds=pass_fds)
        if on_start:
            on_start(process)
        for line in process.stdout:
            log(line.rstrip())
        returncode = process.wait()
    result = ExperimentResult.from_dict(json.loads(result_path.read_text())) if result_path.is_file() else None
    if result is None or (returncode != 0 and result.stop_reason.retryable):
        raise ExperimentFailed(returncode, result)
    return result  # including a final outcome (invalid data, OOM, NaN loss): the caller decides


def stop(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGTERM the process group, then SIGKILL what is left after the grace period."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
