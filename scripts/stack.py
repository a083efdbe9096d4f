"""`make airflow` / `make stop`: the real Airflow stack on this machine (api-server, scheduler,
dag-processor, triggerer; LocalExecutor on the embedded Postgres, or CeleryExecutor with Redis and
Celery workers when SWEEP_EXECUTOR=CeleryExecutor), in the background with pid files under
.sweep/run, and stopped again with nothing left running.
"""

from __future__ import annotations

import os
import sys

from devstack.local import REPO_ROOT
from devstack.stack import Stack, StackError


def stack() -> Stack:
    # SWEEP_AIRFLOW_HOST=0.0.0.0 serves the UI on every interface; the default is this machine only.
    return Stack(REPO_ROOT / ".sweep", port=int(os.environ.get("SWEEP_AIRFLOW_PORT", "8080")),
                 host=os.environ.get("SWEEP_AIRFLOW_HOST", "127.0.0.1"),
                 executor=os.environ.get("SWEEP_EXECUTOR", "LocalExecutor"), reports_dir=REPO_ROOT / "reports")


def start() -> int:
    the_stack = stack()
    try:
        the_stack.start()
    except StackError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"Airflow UI: {the_stack.url}  login: admin / {the_stack.admin_password()}  ({the_stack.executor})")
    print(f"DAGs start paused. Offline, the trigger form defaults to the local demo data ({the_stack.data_dir}) "
          "and the demo budget; reports: the report task's 'Report' link, or 'Sweep reports' in the menu")
    print("stop everything with: make stop")
    return 0


def stop() -> int:
    for name in stack().stop():
        print(f"stopped {name}")
    return 0


if __name__ == "__main__":
    sys.exit({"start": start, "stop": stop}[sys.argv[1]]())
