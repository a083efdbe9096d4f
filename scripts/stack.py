"""`make airflow` / `make stop`: the real Airflow stack on this machine (api-server, scheduler,
dag-processor, triggerer; LocalExecutor on the embedded Postgres), started in the background with
pid files under .sweep/run, and stopped again with nothing left running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sweep_airflow.local import REPO_ROOT, airflow_env, prepare_airflow, prepare_offline_assets
from training import database

HOME = REPO_ROOT / ".sweep"
RUN_DIR = HOME / "run"
PORT = int(os.environ.get("SWEEP_AIRFLOW_PORT", "8080"))
COMPONENTS = {
    "api-server": ["airflow", "api-server", "--port", str(PORT)],
    "scheduler": ["airflow", "scheduler"],
    "dag-processor": ["airflow", "dag-processor"],
    "triggerer": ["airflow", "triggerer"],
}


def shared_secret() -> str:
    """Every component must sign and check execution-API tokens with the same secret."""
    path = RUN_DIR / "jwt_secret"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text()


def running(name: str) -> int | None:
    pid_file = RUN_DIR / f"{name}.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start() -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    results_url, airflow_url = database.provision(HOME / "pgdata")
    models_dir, data_dir = prepare_offline_assets(HOME)
    env = airflow_env(HOME, results_url, airflow_url, SWEEP_MODEL_ROOT=str(models_dir),
                      SWEEP_REPORTS_DIR=str(REPO_ROOT / "reports"),
                      AIRFLOW__API_AUTH__JWT_SECRET=shared_secret(),
                      AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
                      AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{PORT}/execution/",
                      AIRFLOW__API__BASE_URL=f"http://localhost:{PORT}")
    prepare_airflow(env)
    for name, command in COMPONENTS.items():
        if running(name):
            print(f"{name} already running")
            continue
        with open(RUN_DIR / f"{name}.log", "a") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=REPO_ROOT)
        (RUN_DIR / f"{name}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://localhost:{PORT}/api/v2/version", timeout=5)
            break
        except OSError:
            time.sleep(2)
    else:
        print(f"the api-server did not answer within 3 minutes; see {RUN_DIR / 'api-server.log'}", file=sys.stderr)
        return 1
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin", "?") if passwords.is_file() else "(see api-server log)"
    print(f"Airflow UI: http://localhost:{PORT}  login: admin / {password}")
    print(f"DAGs start paused. For an offline smoke run, trigger a tier with budget 'demo' and dataset {data_dir}")
    print("stop everything with: make stop")
    return 0


def stop() -> int:
    for name in COMPONENTS:
        pid = running(name)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while running(name) and time.monotonic() < deadline:
                time.sleep(0.5)
            if running(name):
                os.killpg(pid, signal.SIGKILL)
            print(f"stopped {name}")
        (RUN_DIR / f"{name}.pid").unlink(missing_ok=True)
    print("Postgres:", "stopped" if database.stop_embedded_server(HOME / "pgdata") else "not running")
    return 0


if __name__ == "__main__":
    sys.exit({"start": start, "stop": stop}[sys.argv[1]]())
