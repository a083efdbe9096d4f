"""docker-compose.yml run by podman on one machine, all traffic on loopback (make compose-check):
the local base images, the project's image, and a compose project brought up in the order of its
`depends_on` conditions, with podman's health checks run by this process (podman 4 runs them from
systemd timers, and there is no systemd here; podman-compose ignores health conditions before
podman 4.6)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.local import REPO_ROOT

CHECK_DIR = REPO_ROOT / "deploy" / "compose-check"
PREFIX = "localhost/compose-check"
BASE = f"{PREFIX}/bookworm-minbase"
STAND_INS = {  # the base images docker-compose.yml and the Dockerfile name, built here from Debian packages
    f"{PREFIX}/python:3.11-bookworm": "python.Containerfile",
    f"{PREFIX}/postgres:bookworm": "postgres.Containerfile",
    f"{PREFIX}/redis:bookworm": "redis.Containerfile",
}
PROJECT_IMAGE = "localhost/code-sweep:latest"  # docker-compose.yml's `image: code-sweep:latest`
DEBIAN_MIRROR = os.environ.get("SWEEP_DEBIAN_MIRROR", "http://deb.debian.org/debian")


class CheckFailed(RuntimeError):
    pass


def run(command: list[str], env: dict | None = None, capture: bool = False, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if check and result.returncode != 0:
        raise CheckFailed(f"`{' '.join(command)}` exited with {result.returncode}"
                          + (f":\n{result.stdout[-3000:]}" if capture else ""))
    return result


def install_tools(work: Path) -> dict[str, str]:
    """podman, runc and debootstrap from Debian (once), and the containers.conf podman needs here:
    no default ulimits (runc fails to set them in this sandbox) and runc as the runtime. Returns the
    environment every podman call gets."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        if os.geteuid() != 0:
            raise CheckFailed(f"{', '.join(missing)} missing; install them (apt-get install podman runc debootstrap)")
        print(f"installing {', '.join(missing)} from Debian ...")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "podman", "runc", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def image_exists(name: str, env: dict) -> bool:
    return run(["podman", "image", "exists", name], env=env, check=False).returncode == 0


def build_bases(work: Path, env: dict) -> list[str]:
    """The Debian root file system (debootstrap, once) and the stand-ins of python, postgres and
    redis on it (podman's layer cache makes a rebuild instant). Returns what was built anew."""
    built = []
    if not image_exists(BASE, env):
        rootfs = work / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], capture=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, env=env,
                                  capture_output=True, text=True)
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise CheckFailed(f"podman import of the debootstrap root failed: {imported.stderr[-2000:]}")
        shutil.rmtree(rootfs, ignore_errors=True)
        built.append(BASE)
    for name, containerfile in STAND_INS.items():
        new = not image_exists(name, env)
        run(["podman", "build", "--network", "host", "--build-arg", f"BASE={BASE}", "-t", name,
             "-f", str(CHECK_DIR / containerfile), str(CHECK_DIR)], env=env, capture=True)
        if new:
            built.append(name)
    return built


def pip_setup(work: Path) -> list[str]:
    """This machine's pip settings (index, find-links, CA bundle, constraints: `pip config list`,
    environment included) as a pip.conf for the image build, and read-only mounts of the files and
    folders it names, so the build installs from where this machine's pip does."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], capture=True, check=False).stdout
    settings = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if "." in key and value:
            settings[key.rsplit(".", 1)[1]] = value.strip().strip("'\"")
    conf = work / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(settings.items())))
    mounts = ["-v", f"{conf}:/etc/pip.conf:ro"]
    paths = set()
    for value in settings.values():
        for word in value.split():
            path = Path(word.removeprefix("file://"))
            if path.is_absolute() and path.exists():
                # a file:// index: the folder it lies in too (its links point beside it)
                paths.add(path.parent if word.startswith("file://") else path)
    mounts += [arg for path in sorted(paths) for arg in ("-v", f"{path}:{path}:ro")]
    return mounts


def build_project_image(work: Path, env: dict) -> None:
    """The Dockerfile as it is, on the local python stand-in."""
    run(["podman", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={PREFIX}/python:3.11-bookworm",
         *pip_setup(work), "-t", PROJECT_IMAGE, "-f", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT)],
        env=env, capture=True)


@dataclass
class Compose:
    """One compose project (podman-compose with the given files), its containers and its health."""

    project: str
    files: list[Path]
    env_file: Path
    env: dict
    healthy: dict[str, float] = field(default_factory=dict)  # service: when its health check first passed

    def command(self, *args: str) -> list[str]:
        podman_compose = str(Path(sys.executable).with_name("podman-compose"))
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [podman_compose, "--in-pod", "false", "-p", self.project, "--env-file", str(self.env_file),
                *files, *args]

    def __call__(self, *args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.command(*args), env=self.env, capture=capture, check=check, timeout=900)

    def services(self) -> dict:
        import yaml

        return yaml.safe_load(self("config").stdout)["services"]

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def state(self, service: str) -> dict:
        found = run(["podman", "inspect", self.container(service)], env=self.env, capture=True, check=False)
        return json.loads(found.stdout)[0]["State"] if found.returncode == 0 else {}

    def check_health(self, service: str) -> bool:
        """Runs the service's health check once, as podman's timer would."""
        if service in self.healthy:
            return True
        passed = run(["podman", "healthcheck", "run", self.container(service)], env=self.env, capture=True,
                     check=False).returncode == 0
        if passed:
            self.healthy[service] = time.monotonic()
        return passed

    def satisfied(self, service: str, condition: str) -> bool:
        state = self.state(service)
        if condition == "service_completed_successfully":
            if state.get("Status") == "exited" and state.get("ExitCode") != 0:
                raise CheckFailed(f"{service} exited with {state.get('ExitCode')}:\n{self.logs(service)}")
            return state.get("Status") == "exited"
        if not state.get("Running"):
            return False
        return condition != "service_healthy" or self.check_health(service)

    def up(self, timeout_seconds: float, log=print) -> None:
        """Starts each service once its dependencies meet their conditions, and waits until every
        health check passes and every one-shot service has exited with 0."""
        config = self.services()
        pending, started = set(config), {}
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            ready = sorted(name for name in pending if all(
                dependency in started and self.satisfied(dependency, (spec or {}).get("condition", "service_started"))
                for dependency, spec in _depends_on(config[name]).items()))
            if ready:
                self("up", "-d", "--no-deps", *ready)
                for name in ready:
                    started[name] = time.monotonic()
                    pending.discard(name)
                log(f"  started {', '.join(ready)}")
            waiting = [name for name in started if not self._settled(name, config[name])]
            if not pending and not waiting:
                return
            time.sleep(3)
        raise CheckFailed(f"not up within {timeout_seconds:.0f} s: pending {sorted(pending)}, "
                          f"not healthy {[n for n in started if not self._settled(n, config[n])]}")

    def _settled(self, service: str, spec: dict) -> bool:
        if spec.get("restart") is None and "healthcheck" not in spec:  # one-shot (airflow-init)
            return self.satisfied(service, "service_completed_successfully")
        state = self.state(service)
        if state.get("Status") == "exited" and spec.get("restart") != "always":
            raise CheckFailed(f"{service} exited:\n{self.logs(service)}")
        return "healthcheck" not in spec or self.satisfied(service, "service_healthy")

    def logs(self, service: str, lines: int = 60) -> str:
        return run(["podman", "logs", "--tail", str(lines), self.container(service)], env=self.env, capture=True,
                   check=False).stdout

    def leftovers(self) -> dict[str, list[str]]:
        """What of this project is still on the machine: containers, volumes, pods, networks."""
        label = f"label=io.podman.compose.project={self.project}"
        found = {}
        for kind, args in (("containers", ["ps", "-a", "--filter", label, "--format", "{{.Names}}"]),
                           ("volumes", ["volume", "ls", "--filter", label, "--format", "{{.Name}}"]),
                           ("pods", ["pod", "ls", "--filter", f"name={self.project}", "--format", "{{.Name}}"]),
                           ("networks", ["network", "ls", "--format", "{{.Name}}"])):
            names = run(["podman", *args], env=self.env, capture=True, check=False).stdout.split()
            found[kind] = [name for name in names if kind != "networks" or name != "podman"]
        return {kind: names for kind, names in found.items() if names}


def _depends_on(spec: dict) -> dict:
    depends = spec.get("depends_on") or {}
    return {name: {} for name in depends} if isinstance(depends, list) else depends
