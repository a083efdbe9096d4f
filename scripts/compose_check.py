"""`make compose-check`: docker-compose.yml and the Dockerfile, brought up for real with podman on
this machine, every service on the host network (deploy/compose-check/host-network.yml), a tier
run through the REST API on the Celery workers, a GPU worker restarted mid-run, and everything
removed at the end. Prints each phase's time. SWEEP_COMPOSE_CHECK_KEEP=1 leaves the stack up."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from devstack.local import REPO_ROOT, prepare_offline_assets
from devstack.podman import CHECK_DIR, CheckFailed, Compose, build_bases, build_project_image, install_tools, run
from training.plan import load_plan

WORK = REPO_ROOT / ".sweep" / "compose-check"
PROJECT = "code-sweep-check"
PASSWORDS_FILE = "/opt/airflow/simple_auth_manager_passwords.json.generated"  # the api-server's
TIER_MODEL = "Salesforce/codet5-small"


def free_ports(names: list[str]) -> dict[str, str]:
    sockets = [socket.socket() for _ in names]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = {name: str(sock.getsockname()[1]) for name, sock in zip(names, sockets)}
    for sock in sockets:
        sock.close()
    return ports


def readable_by_all(*folders: Path) -> None:
    """The containers run as uid 50000 and read the mounted assets; transformers writes weights
    with mode 0600 (found here: PermissionError on model.safetensors in the start task)."""
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


class Api:
    """The REST API as the admin, with the password the api-server generated."""

    def __init__(self, compose: Compose, port: str):
        self.url = f"http://127.0.0.1:{port}"
        password = json.loads(run(["podman", "exec", compose.container("airflow-apiserver"), "cat", PASSWORDS_FILE],
                                  env=compose.env, capture=True).stdout)["admin"]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password},
                               auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.token}"} if auth else {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise CheckFailed(f"{method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')}") from None

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances?limit=200"
        return self.call("GET", path)["task_instances"]

    def wait(self, dag_id: str, run_id: str, timeout_seconds: float, every=None) -> dict:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            found = self.run(dag_id, run_id)
            if found["state"] in ("success", "failed"):
                return found
            if every:
                every()
            time.sleep(2)
        raise CheckFailed(f"{dag_id} {run_id} not finished within {timeout_seconds:.0f} s")


def wait_for_dag(api: Api, dag_id: str, timeout_seconds: float = 300) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            api.call("GET", f"/api/v2/dags/{dag_id}")
            return
        except CheckFailed:
            time.sleep(3)
    raise CheckFailed(f"the dag-processor did not parse {dag_id} within {timeout_seconds} s")


def urls(ports: dict[str, str], secret: dict[str, str]) -> dict[str, str]:
    host = f"127.0.0.1:{ports['CHECK_POSTGRES_PORT']}"
    return {"admin": f"postgresql://airflow:{secret['POSTGRES_PASSWORD']}@{host}/sweep",
            "pipeline": f"postgresql://sweep_pipeline:{secret['SWEEP_PIPELINE_PASSWORD']}@{host}/sweep",
            "analyst": f"postgresql://check_analyst:{secret['ANALYST_PASSWORD']}@{host}/sweep"}


def query(url: str, sql: str, **params) -> list[dict]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def check_results(api: Api, compose: Compose, database: dict[str, str], run_id: str, expected: int) -> None:
    rows = query(database["pipeline"], "SELECT status, stop_reason, test_f1 FROM experiments WHERE dag_id = "
                 "'sweep_small' AND run_id = :run", run=run_id)
    succeeded = [row for row in rows if row["status"] == "finished" and row["test_f1"] is not None
                 and row["stop_reason"] in ("completed", "early_stopped")]
    print(f"  as sweep_pipeline: {len(rows)} experiment rows for the run, {len(succeeded)} finished with a test F1")
    if len(succeeded) != expected:
        raise CheckFailed(f"expected {expected} succeeded experiments, found {rows}")
    run([sys.executable, "-m", "training", "db", "add-user", "--name", "check_analyst", "--role", "analyst"],
        env={**os.environ, "SWEEP_DATABASE_URL": database["admin"],
             "SWEEP_USER_PASSWORD": compose.env["ANALYST_PASSWORD"]}, capture=True)
    best = query(database["analyst"], "SELECT model_id, test_f1 FROM analytics.best_configuration_per_model "
                 "WHERE run_id = :run", run=run_id)
    print(f"  as an analyst: analytics.best_configuration_per_model answers {best}")
    if len(best) != 2:
        raise CheckFailed(f"expected a best configuration per model of the tier, got {best}")
    try:
        query(database["analyst"], "DELETE FROM experiments")
        raise CheckFailed("the analyst role could delete experiments")
    except sa.exc.ProgrammingError:
        print("  as an analyst: DELETE FROM experiments refused (permission denied)")
    note = api.run("sweep_small", run_id).get("note") or ""
    report = note[note.find("(") + 1:note.rfind(")")]
    if not report.startswith(api.url):
        raise CheckFailed(f"the run's note does not link the report: {note!r}")
    try:
        urllib.request.urlopen(report, timeout=30)
        raise CheckFailed(f"{report} served without a login")
    except urllib.error.HTTPError as error:
        refused = error.code
    request = urllib.request.Request(report, headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        html = response.read().decode()
    if "<html" not in html.lower() or TIER_MODEL not in html:
        raise CheckFailed(f"{report} did not serve the report: {html[:300]}")
    print(f"  report: {report} -> HTTP {refused} without a token, {len(html):,} bytes of HTML with one")


def restart_mid_run(api: Api, compose: Compose, database: dict[str, str], data: str) -> None:
    """A second run (demo budget, one model: runs long enough to be caught mid-training); once an
    experiment has an evaluation recorded, its GPU worker is restarted as an operator would
    (`podman-compose restart`); the task must be retried and resume from the step it saved at."""
    run_id = api.trigger("sweep_small", {"budget": "demo", "dataset": data, "models": [TIER_MODEL]})
    print(f"  triggered {run_id} (demo budget, {TIER_MODEL} only)")
    deadline, target = time.monotonic() + 900, None
    while target is None and time.monotonic() < deadline:
        for ti in api.task_instances("sweep_small", run_id):
            if ti["state"] != "running" or not ti["task_id"].endswith(".train") or not ti.get("hostname"):
                continue
            # The rendered map index ("lr=... bs=...") is set when a task ends; the DAG maps the
            # tier's sorted grid, so the index names the cell.
            cell = load_plan().tiers["small"].combinations()[ti["map_index"]]
            points = query(database["pipeline"], "SELECT e.experiment_key, count(*) AS points FROM experiments e "
                           "JOIN evaluation_points p USING (experiment_id) WHERE e.run_id = :run AND e.status = "
                           "'running' AND e.learning_rate = :lr AND e.batch_size = :bs AND e.num_epochs = :ep "
                           "AND e.weight_decay = :wd GROUP BY 1", run=run_id, lr=cell.learning_rate,
                           bs=cell.batch_size, ep=cell.num_epochs, wd=cell.weight_decay)
            if points:
                target = (ti, points[0]["experiment_key"])
                break
        time.sleep(0.5)
    if target is None:
        raise CheckFailed("no experiment was caught training with an evaluation recorded")
    ti, key = target
    worker = ti["hostname"]
    print(f"  restarting {worker} while it trains map index {ti['map_index']} ({key}) ...")
    started = time.monotonic()
    compose("restart", worker)
    print(f"  {worker} restarted in {time.monotonic() - started:.0f} s; its log:\n"
          + "\n".join("    " + line for line in compose.logs(worker, 400).splitlines() if "SIGTERM" in line))
    finished = api.wait("sweep_small", run_id, 1800)
    if finished["state"] != "success":
        raise CheckFailed(f"the run after the restart ended {finished['state']}")
    row = query(database["pipeline"], "SELECT attempt_count, resumed_from_step, status FROM experiments "
                "WHERE experiment_key = :key AND run_id = :run", key=key, run=run_id)[0]
    tries = [t["try_number"] for t in api.task_instances("sweep_small", run_id)
             if t["task_id"] == ti["task_id"] and t["map_index"] == ti["map_index"]]
    print(f"  after the restart: try {tries[0]}, {row['attempt_count']} attempts, resumed from step "
          f"{row['resumed_from_step']}, {row['status']}")
    if not (tries[0] >= 2 and row["attempt_count"] >= 2 and (row["resumed_from_step"] or 0) > 0):
        raise CheckFailed(f"the restarted task did not resume: try {tries}, {row}")


def main() -> int:
    phases, started = [], time.monotonic()

    def phase(name: str) -> None:
        now = time.monotonic()
        if phases:
            phases[-1][1] = now - phases[-1][1]
        phases.append([name, now])
        print(f"== {name}", flush=True)

    compose, return_code = None, 1
    keep = os.environ.get("SWEEP_COMPOSE_CHECK_KEEP") == "1"
    try:
        phase("install podman, runc, debootstrap; containers.conf")
        env = install_tools(WORK)
        phase("base images (debootstrap once, then stand-ins of python, postgres, redis)")
        print(f"  built: {build_bases(WORK, env) or 'nothing new (cached)'}")
        phase("the project's image (Dockerfile)")
        build_project_image(WORK, env)
        phase("offline data and stand-in models")
        models, data = prepare_offline_assets(REPO_ROOT / ".sweep")
        readable_by_all(models, data)
        ports = free_ports(["CHECK_POSTGRES_PORT", "CHECK_REDIS_PORT", "CHECK_API_PORT", "CHECK_SCHEDULER_HEALTH_PORT",
                            "CHECK_TRIGGER_LOG_PORT", "CHECK_WORKER_LOG_PORT_0", "CHECK_WORKER_LOG_PORT_1",
                            "CHECK_WORKER_LOG_PORT_2"])
        secret = {name: secrets.token_urlsafe(24) for name in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET",
                                                               "SWEEP_PIPELINE_PASSWORD", "ANALYST_PASSWORD")}
        secret["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
        env_file = WORK / "env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in secret.items() if k != "ANALYST_PASSWORD"))
        env_file.chmod(0o600)
        files = [REPO_ROOT / "docker-compose.yml", CHECK_DIR / "host-network.yml"]
        if run(["sh", "-c", "command -v nvidia-smi && nvidia-smi -L"], capture=True, check=False).returncode != 0:
            print("  no NVIDIA GPU here (nvidia-smi): deploy/compose-check/no-gpu.yml turns the GPU workers' device "
                  "reservations off; they train on the CPU")
            files.append(CHECK_DIR / "no-gpu.yml")
        compose = Compose(PROJECT, files, env_file, {**env, **ports, **secret, "CHECK_MODELS_DIR": str(models),
                                                     "CHECK_DATA_DIR": str(data)})
        phase("up: each service after its dependencies' conditions; every health check passes")
        compose.up(timeout_seconds=600)
        print(f"  healthy: {', '.join(sorted(compose.healthy))}")
        api = Api(compose, ports["CHECK_API_PORT"])
        wait_for_dag(api, "sweep_small")
        database = urls(ports, secret)
        phase("sweep_small, tiny budget, offline data: triggered through the REST API")
        run_id = api.trigger("sweep_small", {"budget": "tiny", "dataset": "/data/offline/data"})
        print(f"  triggered {run_id}")
        finished = api.wait("sweep_small", run_id, 1800)
        states = sorted({ti["state"] or "none" for ti in api.task_instances("sweep_small", run_id)})
        print(f"  {finished['state']}; task states {states}")
        if finished["state"] != "success":
            raise CheckFailed(f"{run_id} ended {finished['state']}")
        phase("rows as the pipeline, views as an analyst, the report over HTTP")
        check_results(api, compose, database, run_id, expected=16)
        phase("a GPU worker restarted mid-run: retried, resumed")
        restart_mid_run(api, compose, database, "/data/offline/data")
    except CheckFailed as error:
        print(f"FAILED: {error}", file=sys.stderr)
    else:
        return_code = 0
    finally:
        if compose is not None and not keep:
            phase("down: containers and volumes removed")
            compose("down", "--volumes", check=False)
            left = compose.leftovers()
            print(f"  left on the machine: {left or 'nothing'}")
            return_code = return_code if not left else 1
        if phases:
            phases[-1][1] = time.monotonic() - phases[-1][1]
    print("\nphase times:")
    for name, seconds in phases:
        print(f"  {seconds:7.1f} s  {name}")
    print(f"  {time.monotonic() - started:7.1f} s  in all")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
