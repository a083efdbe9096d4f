"""The real Airflow stack on one machine: api-server, scheduler, dag-processor and triggerer on
the embedded Postgres, with the LocalExecutor or, for the distributed path, the CeleryExecutor
with a Redis broker and Celery workers (one on queue `gpu`, one on the default queue).

Every process runs in its own session with a pid file under <home>/run, so `stop()` ends each
one with its children; what is still running with this stack's SWEEP_HOME afterwards (a training
subprocess of a task that was running at stop time) is ended too. `make airflow` / `make stop`
and the multi-process tests use this.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.local import REPO_ROOT, airflow_env, prepare_airflow, prepare_offline_assets

EXECUTORS = ("LocalExecutor", "CeleryExecutor")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    home: Path
    port: int = 8080
    host: str = "127.0.0.1"  # the api-server's interface: this machine only, unless asked otherwise
    executor: str = "LocalExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    reports_dir: Path | None = None
    models_dir: Path | None = None  # default: stand-ins built under home
    data_dir: Path | None = None  # default: the stdlib dataset generated under home
    # Per component, what its environment adds: a worker with a SWEEP_HOME of its own plays a
    # separate host that shares only Postgres, Redis and the artifact store.
    component_env: dict[str, dict[str, str]] = field(default_factory=dict)
    _token: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise StackError(f"executor {self.executor!r} is not supported here; choose one of {EXECUTORS}")
        self.home = Path(self.home).resolve()
        self.run_dir = self.home / "run"

    # -- configuration ---------------------------------------------------------------------------

    def _ports(self) -> dict[str, int]:
        """Ports beside the UI's, chosen once and kept in run/ports.json, so two stacks never collide."""
        path = self.run_dir / "ports.json"
        if path.is_file():
            return json.loads(path.read_text())
        ports = {"redis": free_port(), "worker_logs": free_port(), "trigger_logs": free_port(),
                 "gpu_worker_logs": free_port()}
        path.write_text(json.dumps(ports))
        return ports

    def _secret(self) -> str:
        """Every component signs and checks execution-API tokens with the same secret."""
        path = self.run_dir / "jwt_secret"
        if not path.is_file():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text()

    def components(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        ports = self._ports()
        components = {
            "api-server": (["airflow", "api-server", "--host", self.host, "--port", str(self.port)], {}),
            "scheduler": (["airflow", "scheduler"], {}),
            "dag-processor": (["airflow", "dag-processor"], {}),
            "triggerer": (["airflow", "triggerer"], {}),
        }
        if self.executor == "CeleryExecutor":
            # Redis first: the scheduler sends to it as soon as a task is queued.
            components = {
                "redis": (["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(self.run_dir)], {}),
                **components,
                # One worker per GPU on queue gpu, one task at a time: here the machine's one "GPU".
                "celery-gpu-worker-0": (["airflow", "celery", "worker", "--queues", "gpu", "--concurrency", "1",
                                         "--celery-hostname", "gpu-worker-0@%h"],
                                        {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["gpu_worker_logs"])}),
                "celery-worker": (["airflow", "celery", "worker", "--queues", "default", "--concurrency", "2",
                                   "--celery-hostname", "worker@%h"], {}),
            }
        return components

    def environment(self, results_url: str, airflow_url: str) -> dict[str, str]:
        ports = self._ports()
        extra = {
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
            "SWEEP_MODEL_ROOT": str(self.models_dir),
            "SWEEP_REPORTS_DIR": str(self.reports_dir or self.home / "reports"),
            # Offline: the trigger form (and any scheduled run) defaults to the local demo data and
            # the demo budget instead of the hub dataset and the full plan.
            "SWEEP_DATASET": str(self.data_dir),
            "SWEEP_DEFAULT_BUDGET": "demo",
        }
        if self.executor == "CeleryExecutor":
            extra["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
            extra["AIRFLOW__CELERY__RESULT_BACKEND"] = f"redis://127.0.0.1:{ports['redis']}/1"
        return airflow_env(self.home, results_url, airflow_url, **{**extra, **self.extra_env})

    # -- processes ---------------------------------------------------------------------------------

    def running(self, name: str) -> int | None:
        pid_file = self.run_dir / f"{name}.pid"
        if not pid_file.is_file():
            return None
        pid = int(pid_file.read_text())
        return pid if _alive(pid) else None

    def start(self, timeout_seconds: float = 240) -> dict[str, str]:
        """Start every component not yet running; return the environment they run with."""
        from training.results import database

        self.run_dir.mkdir(parents=True, exist_ok=True)
        results_url, airflow_url = database.provision(self.home / "pgdata")
        if self.models_dir is None or self.data_dir is None:
            self.models_dir, self.data_dir = prepare_offline_assets(self.home)
        env = self.environment(results_url, airflow_url)
        prepare_airflow(env)
        for name, (command, overrides) in self.components().items():
            if self.running(name):
                continue
            with open(self.run_dir / f"{name}.log", "a") as log:
                process = subprocess.Popen(command, env={**env, **overrides, **self.component_env.get(name, {})},
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=REPO_ROOT)
            (self.run_dir / f"{name}.pid").write_text(str(process.pid))
        self.wait_until_ready(timeout_seconds)
        from training.plan import load_plan

        plan = load_plan(env.get("SWEEP_PLAN_FILE"))
        self.wait_for_dags([f"sweep_{tier}" for tier in plan.tiers], timeout_seconds)
        return env

    def wait_for_dags(self, dag_ids: list[str], timeout_seconds: float) -> None:
        """Until the dag-processor has parsed the tier DAGs (a trigger before that gets a 404);
        an import error ends the wait at once, with its traceback."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            errors = self.api("GET", "importErrors")["import_errors"]
            if errors:
                raise StackError("the DAG folder does not import:\n" +
                                 "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors))
            found = {dag["dag_id"] for dag in self.api("GET", "dags?limit=100")["dags"]}
            if set(dag_ids) <= found:
                return
            time.sleep(2)
        raise StackError(f"{sorted(set(dag_ids) - found)} did not appear within {timeout_seconds:.0f} s; "
                         f"see {self.run_dir / 'dag-processor.log'}")

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            dead = [name for name in self.components() if not self.running(name)]
            if dead:
                raise StackError(f"{', '.join(dead)} stopped during start-up; see {self.run_dir}/<name>.log")
            try:
                urllib.request.urlopen(f"{self.url}/api/v2/version", timeout=5)
                return
            except OSError:
                time.sleep(2)
        raise StackError(f"the api-server did not answer within {timeout_seconds:.0f} s; "
                         f"see {self.run_dir / 'api-server.log'}")

    def stop(self, grace_seconds: float = 30) -> list[str]:
        """Stop every component (its whole process group), then anything left with this stack's
        SWEEP_HOME, then its Postgres; return what was stopped. All are asked at once (SIGTERM),
        and whatever has not ended after grace_seconds is killed."""
        from training.results import database

        # Whatever has a pid file, also components of another executor's start (make airflow with
        # SWEEP_EXECUTOR set, make stop without it).
        names = list(self.components())
        names += sorted(path.stem for path in self.run_dir.glob("*.pid") if path.stem not in names)
        groups = {name: pid for name in names if (pid := self.running(name))}
        _terminate(list(groups.values()), grace_seconds, whole_group=True)
        for name in names:
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        stopped = list(groups)
        leftovers = self.leftovers()  # e.g. a training subprocess of a task running at stop time
        _terminate(leftovers, grace_seconds, whole_group=False)
        stopped += [f"leftover process {pid}" for pid in leftovers]
        if database.stop_embedded_server(self.home / "pgdata"):
            stopped.append("postgres")
        return stopped

    def leftovers(self) -> list[int]:
        """Processes still running with this stack's SWEEP_HOME in their environment."""
        marker = f"SWEEP_HOME={self.home}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found.append(int(entry.name))
        return found

    # -- the UI and the REST API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        reachable = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{reachable}:{self.port}"

    def admin_password(self) -> str:
        path = self.home / "airflow" / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())["admin"]

    def token(self) -> str:
        """The admin's REST API token, fetched once (it is valid for a day)."""
        if self._token:
            return self._token
        body = json.dumps({"username": "admin", "password": self.admin_password()}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            self._token = json.loads(response.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """A call to the public REST API (/api/v2); errors carry the server's answer."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/{path.lstrip('/')}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise StackError(f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}") from None


def _alive(pid: int) -> bool:
    try:
        # A component started by this process (the tests) is its child: reap it once it has ended,
        # or it stays a zombie that still answers signal 0.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pids: list[int], grace_seconds: float, whole_group: bool) -> None:
    """SIGTERM to each (process group), wait up to grace_seconds for all, then SIGKILL the rest;
    for groups, SIGKILL always follows, for stragglers whose leader has already exited."""
    send = os.killpg if whole_group else os.kill
    for pid in pids:
        try:
            send(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids:
        try:
            send(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
