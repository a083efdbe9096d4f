"""The image's entrypoint (deploy/entrypoint.sh), run here as a process: which command it runs, and
that a container stop (SIGTERM to it alone) reaches the experiments training in the container
before the Airflow command, so each saves its full state (found with make compose-check: a
restarted GPU worker's task started again from step 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "deploy" / "entrypoint.sh"

# Stands in for `airflow`: records its arguments; with `celery worker`, starts an "experiment" in
# a session of its own (as engine/launcher.py does) whose command line is the real one's, then
# waits; each records the signal it got. The experiment ends on SIGTERM with 143, as the real one
# does after its full save.
FAKE_AIRFLOW = """#!/bin/bash
echo "$@" > "$RECORD/airflow-args"
if [ "$1" = celery ]; then
    setsid bash -c 'trap "echo TERM > $RECORD/experiment; exit 143" TERM; while :; do sleep 0.05; done' \\
        -m training run-experiment --spec spec.json &
    trap 'echo TERM > "$RECORD/airflow"; sleep 0.3; exit 0' TERM
    touch "$RECORD/ready"
    while :; do sleep 0.05; done
fi
"""


def fake_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    airflow = bin_dir / "airflow"
    airflow.write_text(FAKE_AIRFLOW)
    airflow.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(tmp_path)}


def wait_for(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_subcommand_runs_as_airflow_and_other_commands_as_given(tmp_path):
    env = fake_path(tmp_path)
    subprocess.run([str(ENTRYPOINT), "api-server", "--port", "8080"], env=env, check=True, timeout=30)
    assert (tmp_path / "airflow-args").read_text().split() == ["api-server", "--port", "8080"]
    # The Helm chart's pods and KubernetesExecutor's pass full commands: they run unchanged.
    for command in (["bash", "-c", "echo as-given"], ["python3", "-c", "print('as-given')"]):
        result = subprocess.run([str(ENTRYPOINT), *command], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.strip() == "as-given", result
    assert subprocess.run([str(ENTRYPOINT), "bash", "-c", "exit 3"], env=env, timeout=30).returncode == 3


def test_a_stop_reaches_the_training_experiment_first_then_airflow(tmp_path):
    env = fake_path(tmp_path)
    entrypoint = subprocess.Popen([str(ENTRYPOINT), "celery", "worker", "--queues", "gpu"], env=env,
                                  stderr=subprocess.PIPE, text=True)
    try:
        wait_for(tmp_path / "ready")
        time.sleep(0.3)  # the experiment's trap is set
        entrypoint.send_signal(signal.SIGTERM)  # what `docker stop` sends: to PID 1 only
        returncode = entrypoint.wait(timeout=20)
    finally:
        if entrypoint.poll() is None:
            entrypoint.kill()
    assert (tmp_path / "experiment").read_text().strip() == "TERM"
    assert (tmp_path / "airflow").read_text().strip() == "TERM"
    assert returncode == 0  # the Airflow command's own exit status once it has ended
    assert "SIGTERM to experiment process" in entrypoint.stderr.read()


def test_the_image_and_the_gpu_workers_use_it():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "COPY deploy/entrypoint.sh /usr/local/bin/sweep-entrypoint" in dockerfile
    assert 'ENTRYPOINT ["/usr/local/bin/sweep-entrypoint"]' in dockerfile
    assert os.access(ENTRYPOINT, os.X_OK)
