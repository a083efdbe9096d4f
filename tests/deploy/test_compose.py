"""The scale-out stack (docker-compose.yml + Dockerfile), validated without a Docker engine:
Compose's own `config` check, then what the stack must hold for GPU work to be scheduled right."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "SWEEP_PIPELINE_PASSWORD")
COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
              "airflow-worker", "gpu-worker-0", "gpu-worker-1", "postgres", "redis")


def compose_config(tmp_path: Path, secrets: bool = True) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: `make test` installs Debian's docker-compose package")
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{name}=test-{name.lower()}\n" for name in SECRETS) if secrets else "")
    return subprocess.run([binary, "--env-file", str(env_file), "-f", str(REPO_ROOT / "docker-compose.yml"),
                           "config"], capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    result = compose_config(tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    result = compose_config(tmp_path, secrets=False)
    assert result.returncode != 0
    assert "set in .env" in result.stderr
    assert not (REPO_ROOT / ".env").exists() or ".env" in (REPO_ROOT / ".gitignore").read_text()


def test_every_component_is_there_with_a_healthcheck(stack):
    assert set(COMPONENTS) | {"airflow-init"} == set(stack)
    for name in COMPONENTS:
        assert "test" in stack[name]["healthcheck"], name


def test_airflow_components_share_one_image_secret_and_wait_for_healthy_dependencies(stack):
    airflow = [name for name in COMPONENTS if name.startswith(("airflow", "gpu"))]
    assert {stack[name]["image"] for name in airflow} == {"code-sweep:latest"}
    assert {stack[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for name in airflow} == {
        "test-airflow_jwt_secret"}
    for name in airflow:
        env = stack[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert stack[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert stack[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert stack[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        # checkpoints, reports
        assert {v.split(":")[1] for v in stack[name]["volumes"]} == {"/data/sweep", "/data/reports"}
    assert "python -m training db migrate" in " ".join(stack["airflow-init"]["command"])
    assert "airflow pools set gpu" in " ".join(stack["airflow-init"]["command"])  # one slot per GPU worker


@pytest.mark.parametrize("worker, device", [("gpu-worker-0", "0"), ("gpu-worker-1", "1")])
def test_one_worker_per_gpu_on_the_gpu_queue(stack, worker, device):
    service = stack[worker]
    command = " ".join(service["command"]) if isinstance(service["command"], list) else service["command"]
    assert "--queues gpu" in command and "--concurrency 1" in command
    assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0"  # its one visible GPU
    (reservation,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert reservation["device_ids"] == [device] and "count" not in reservation
    assert reservation["capabilities"] == ["gpu"] and reservation["driver"] == "nvidia"


def test_the_image_installs_the_project_with_celery_and_kubernetes():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'pip install -c requirements.lock ".[celery,kubernetes]"' in dockerfile  # the tree the tests run on
    assert "apache-airflow-providers-celery" in (REPO_ROOT / "pyproject.toml").read_text()
    assert "apache-airflow-providers-celery==" in (REPO_ROOT / "requirements.lock").read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (REPO_ROOT / "docker-compose.yml").read_text()


def test_each_airflow_service_asks_the_image_for_an_airflow_subcommand(stack):
    # The image's entrypoint is `airflow` (as in Airflow's own image); without it `command:
    # api-server` would exec a program named api-server (found bringing the image up with podman).
    assert 'ENTRYPOINT ["airflow"]' in (REPO_ROOT / "Dockerfile").read_text()
    for name in COMPONENTS:
        if name.startswith(("airflow", "gpu")):
            command = stack[name]["command"]
            first = command[0] if isinstance(command, list) else command.split()[0]
            assert "entrypoint" not in stack[name] and first in ("api-server", "scheduler", "dag-processor",
                                                                   "triggerer", "celery"), name
    assert stack["airflow-init"]["entrypoint"] in ("/bin/bash", ["/bin/bash"])
