"""`make bench`'s artifact-store figure: training time lost to uploads. CodeBERT's stand-in trains one
grid point (one epoch of 2,000 pairs, an evaluation every 20 steps) four times in one process,
alternating a local-only run and a run whose every save is also sent to an S3 store (moto's server
on 127.0.0.1), with the full state saved at every evaluation (the most upload traffic a plan can
ask for). Training time is the Trainer's own
(samples seen / samples per second), so evaluation and the final upload wait are not counted.

- upload_seconds_lost_per_save: (training seconds with the store - local only) / saves, the mean of
  the two pairs (target: well under a second; the save itself is snapshotted by hard links and the
  upload runs on a background thread).

Usage: python scripts/bench_uploads.py --data DIR --work DIR (a folder with stand-ins under models/,
such as make bench builds), or through scripts/bench.py.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

MODEL = "microsoft/codebert-base"


def moto_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto_server did not start")


def upload_figures(plan, data: Path, work: Path, train_samples: int = 2000) -> dict:
    import contextlib
    import io

    import boto3

    from training.engine.experiment import run_experiment
    from training.parameters import RunParameters
    from training.plan import Hyperparameters
    from training.settings import Storage
    from training.spec import build_spec

    server, endpoint = moto_server()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    boto3.client("s3").create_bucket(Bucket=bucket)
    print(f"\nuploads: {MODEL}'s stand-in, one epoch of {train_samples} pairs, the full state at every evaluation "
          "(every 20 steps), local only and with an S3 store (moto on 127.0.0.1), twice each")
    try:
        timings = {"local": [], "store": []}
        for index, mode in enumerate(("local", "store", "local", "store")):
            storage = dataclasses.replace(Storage.from_environment(),
                                          artifacts_url=f"s3://{bucket}/bench" if mode == "store" else None)
            spec = build_spec(plan, MODEL, Hyperparameters(5e-5, 16, 1, 0.01, 1),
                              RunParameters(budget="demo", dataset=str(data)), dag_id="bench_uploads",
                              run_id=f"{mode}-{index}", storage=storage)
            with contextlib.redirect_stdout(io.StringIO()):
                result = run_experiment(dataclasses.replace(
                    spec, full_checkpoint_minutes=0, max_train_samples=train_samples, max_eval_samples=64,
                    eval_steps=20, early_stopping_patience=1000))
            saves = (result.full_checkpoints_saved or 0) + (result.model_checkpoints_saved or 0)
            seconds = result.samples_seen / result.samples_per_second
            timings[mode].append((seconds, saves))
            print(f"  {mode:5}: {seconds:6.1f} s of training, {saves} saves, missing in the store: "
                  f"{result.artifacts_missing}")
        lost = [(store[0] - local[0]) / max(store[1], 1) for local, store in zip(timings["local"], timings["store"])]
        figure = sum(lost) / len(lost)
        print(f"upload_seconds_lost_per_save {figure:+.3f} (pairs: {', '.join(f'{x:+.3f}' for x in lost)}; "
              "negative: within the noise of CPU timing)")
        return {"upload_seconds_lost_per_save": figure}
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    import argparse

    from training.plan import load_plan

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="a folder with the stand-ins under models/")
    args = parser.parse_args()
    os.environ.update(SWEEP_HOME=str(args.work), SWEEP_MODEL_ROOT=str(args.work / "models"))
    upload_figures(load_plan(), args.data, args.work)
