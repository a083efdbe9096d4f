"""The launcher the operator uses: it leases a GPU on a multi-GPU host for exactly as long as the
training process runs, pins it with CUDA_VISIBLE_DEVICES, and streams the process's log."""

from __future__ import annotations

from tests.training.helpers import spec_for
from training.engine.gpu_lease import GpuLease
from training.engine.launcher import run_in_subprocess


def test_training_runs_on_a_leased_gpu_that_is_released_afterwards(tmp_path, monkeypatch, dataset_dir, model_root):
    locks = tmp_path / "locks"
    monkeypatch.setenv("SWEEP_GPU_COUNT", "1")  # a simulated one-GPU host
    monkeypatch.setenv("SWEEP_GPU_LOCK_DIR", str(locks))
    monkeypatch.setenv("SWEEP_MODEL_ROOT", str(model_root))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    lines, held_while_running = [], []

    def on_start(process):
        held_while_running.append(not GpuLease(1, directory=locks).try_acquire())

    result = run_in_subprocess(spec_for("microsoft/codebert-base", dataset_dir), tmp_path / "work", lines.append,
                               on_start=on_start)
    assert lines[0] == "leased GPU 0 of 1"
    assert any("eval_f1" in line for line in lines)  # the child's log came through
    assert held_while_running == [True]
    assert result.stop_reason in ("completed", "early_stopped")
    assert GpuLease(1, directory=locks).try_acquire()  # released when the process ended
