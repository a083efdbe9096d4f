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
    # The tree the tests run on: the dependencies (a layer of their own) pinned by the lock, then the
    # project without them.
    assert 'pip install -c requirements.lock -r /tmp/requirements.txt' in dockerfile
    assert '"optional-dependencies"]["celery"] + p["optional-dependencies"]["kubernetes"]' in dockerfile
    assert 'pip install --no-deps -c requirements.lock ".[celery,kubernetes]"' in dockerfile
    assert "apache-airflow-providers-celery" in (REPO_ROOT / "pyproject.toml").read_text()
    assert "apache-airflow-providers-celery==" in (REPO_ROOT / "requirements.lock").read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (REPO_ROOT / "docker-compose.yml").read_text()


def test_each_airflow_service_asks_the_image_for_an_airflow_subcommand(stack):
    # The image's entrypoint runs a subcommand as `airflow <subcommand>` (as Airflow's own image
    # does; tests/deploy/test_entrypoint.py); without it `command: api-server` would exec a program
    # named api-server (found bringing the image up with podman).
    assert 'ENTRYPOINT ["/usr/local/bin/sweep-entrypoint"]' in (REPO_ROOT / "Dockerfile").read_text()
    for name in COMPONENTS:
        if name.startswith(("airflow", "gpu")):
            command = stack[name]["command"]
            first = command[0] if isinstance(command, list) else command.split()[0]
            assert "entrypoint" not in stack[name] and first in ("api-server", "scheduler", "dag-processor",
                                                                   "triggerer", "celery"), name
    assert stack["airflow-init"]["entrypoint"] in ("/bin/bash", ["/bin/bash"])


@pytest.mark.parametrize("worker", ["gpu-worker-0", "gpu-worker-1"])
def test_a_gpu_worker_stop_leaves_an_experiment_time_for_its_full_save(stack, worker):
    # The stop reaches the experiment as SIGTERM (deploy/entrypoint.sh); Compose's default 10 s
    # would kill a large model in the middle of writing its optimizer state.
    period = stack[worker]["stop_grace_period"]
    assert period.endswith("m") and int(period[:-1]) >= 2, period


class CheckLoader(yaml.SafeLoader):
    """Reads Compose's !reset and !override tags (the compose-check override uses both)."""


def tagged(loader, node):
    if isinstance(node, yaml.SequenceNode):
        return node.tag, loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return node.tag, loader.construct_mapping(node, deep=True)
    return node.tag, loader.construct_scalar(node)


CheckLoader.add_constructor("!reset", tagged)
CheckLoader.add_constructor("!override", tagged)


def test_the_compose_check_puts_every_service_on_loopback_with_its_own_ports(stack):
    check_dir = REPO_ROOT / "deploy" / "compose-check"
    override = yaml.load((check_dir / "host-network.yml").read_text(), Loader=CheckLoader)["services"]
    assert set(override) == set(stack)  # a service added to the stack without its loopback settings fails here
    for name, service in override.items():
        assert service["network_mode"] == "host" and service["hostname"] == name, name
        assert all(entry.endswith(":127.0.0.1") for entry in service["extra_hosts"]), name
        assert {f"{other}:127.0.0.1" for other in ("postgres", "redis", "airflow-apiserver")} <= set(
            service["extra_hosts"]), name
        if stack[name].get("ports") or stack[name].get("expose"):
            assert service.get("ports", service.get("expose")) == ("!reset", []), name  # nothing published
    # Three Celery workers on one network: each serves its logs on a port of its own.
    log_ports = {override[name]["environment"]["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]
                 for name in ("airflow-worker", "gpu-worker-0", "gpu-worker-1")}
    assert len(log_ports) == 3 and all(port.startswith("${CHECK_WORKER_LOG_PORT_") for port in log_ports)
    assert "listen_addresses=127.0.0.1" in override["postgres"]["command"]
    assert "127.0.0.1" in override["redis"]["command"]
    no_gpu = yaml.load((check_dir / "no-gpu.yml").read_text(), Loader=CheckLoader)["services"]
    assert {name for name in stack if "deploy" in stack[name]} == set(no_gpu)
    assert all(service["deploy"] == ("!reset", {}) for service in no_gpu.values())
