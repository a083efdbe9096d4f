"""GPU check: the training package alone (no Airflow, no database, no hub) on a CUDA machine.

Builds replicas of three of the plan's models at their published sizes (random weights) and
trains one grid point of each tier through the real command line (`python -m training
run-experiment`) with the plan's full cadence (evaluate every 100 steps, log every 25), capped
at --max-steps. Then a real CUDA out-of-memory: a ballast process takes the GPU memory the
medium experiment needs beyond about 70% of its activations, and the same experiment must back
off to a smaller per-device batch and finish. Writes one JSON of measurements to --out.

    python scripts/gpu_check.py --data .sweep/data/stdlib-clones --out /tmp/gpu-check.json
    (the figures in docs/gpu-check.md came from the single-snippet set: `make-dataset --kind bugs`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.parameters import RunParameters  # noqa: E402
from training.plan import Hyperparameters, load_plan  # noqa: E402
from training.settings import Storage  # noqa: E402
from training.spec import build_spec  # noqa: E402

GRID_POINTS = {  # one grid point per tier, each from the plan's grid
    "medium": ("Salesforce/codet5-base", dict(learning_rate=5e-5, batch_size=16, num_epochs=3, weight_decay=0.01,
                                             gradient_accumulation_steps=1)),
    "large": ("Salesforce/codet5-large", dict(learning_rate=2e-5, batch_size=8, num_epochs=3, weight_decay=0.1,
                                             gradient_accumulation_steps=2)),
    "small": ("microsoft/codebert-base", dict(learning_rate=5e-5, batch_size=32, num_epochs=3, weight_decay=0.01,
                                             gradient_accumulation_steps=1)),
}
KEPT = ["model_id", "tier", "stop_reason", "device", "gpu_count", "precision", "attention_implementation",
        "per_device_batch_size", "effective_accumulation_steps", "steps_run", "best_step", "wall_seconds",
        "gpu_hours", "peak_memory_bytes", "mean_gpu_utilization_percent", "samples_per_second",
        "tokens_per_second", "latency_batch1_ms", "throughput_batch32_per_second", "parameter_count",
        "model_size_bytes", "attempt_count", "attempts", "validation_f1", "test_f1", "error"]
ARGS_KEPT = ["bf16", "fp16", "dataloader_pin_memory", "activation_checkpointing", "eval_steps", "logging_steps",
             "per_device_train_batch_size", "gradient_accumulation_steps", "metric_for_best_model",
             "early_stopping_patience", "early_stopping_threshold", "max_length", "train_sampling_strategy"]


def run_experiment(spec, work: Path, label: str, env: dict) -> dict:
    spec_path, result_path = work / f"{label}.spec.json", work / f"{label}.result.json"
    spec.write(spec_path)
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", "training", "run-experiment", "--spec", str(spec_path),
                                "--result", str(result_path)], cwd=REPO, env=env, capture_output=True, text=True)
    log = completed.stdout + completed.stderr
    (work / f"{label}.log").write_text(log)
    print(f"--- {label}: exit {completed.returncode} in {time.monotonic() - started:.0f} s; log tail:")
    print("\n".join(log.splitlines()[-12:]))
    if not result_path.exists():
        return {"label": label, "exit_code": completed.returncode, "error": log[-2000:]}
    result = json.loads(result_path.read_text())
    kept = {key: result.get(key) for key in KEPT}
    if result.get("checkpoint_path"):
        args_file = Path(result["checkpoint_path"]).parent / "training_args.json"
        if args_file.exists():
            effective = json.loads(args_file.read_text())
            kept["effective_arguments"] = {key: effective.get(key) for key in ARGS_KEPT}
    kept["eval_points"] = len(result.get("eval_points") or [])
    kept["oom_lines"] = [line for line in log.splitlines() if "out of memory at" in line or "retrying with" in line]
    return {"label": label, "exit_code": completed.returncode, "process_seconds": time.monotonic() - started, **kept}


def ballast(bytes_to_hold: int) -> subprocess.Popen:
    """A second process holding bytes_to_hold of GPU memory until its stdin closes."""
    code = ("import sys, torch; x = torch.empty(int(sys.argv[1]), dtype=torch.uint8, device='cuda'); "
            "print('holding', x.numel(), flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code, str(bytes_to_hold)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    print(process.stdout.readline().strip())
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/gpu-check")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--deadline-seconds", type=float, default=420)
    parser.add_argument("--scaled", action="store_true", help="scaled-down stand-ins: a dry run of this script on CPU")
    args = parser.parse_args()
    import torch
    import transformers

    began = time.monotonic()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SWEEP_HOME": str(work / "home"), "SWEEP_MODEL_ROOT": str(work / "models"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("SWEEP_DATABASE_URL", None)
    on_gpu = torch.cuda.is_available()
    report = {"gpu": torch.cuda.get_device_name(0) if on_gpu else None, "torch": torch.__version__,
              "transformers": transformers.__version__, "cuda": torch.version.cuda,
              "bf16_supported": on_gpu and torch.cuda.is_bf16_supported(),
              "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if on_gpu else None,
              "replicas": "scaled down" if args.scaled else "published sizes, random weights", "runs": []}
    out = Path(args.out)

    def save():
        report["elapsed_seconds"] = time.monotonic() - began
        out.write_text(json.dumps(report, indent=2))

    models = ",".join(model for model, _ in GRID_POINTS.values())
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "training", "build-standins", "--data", args.data, "--out",
                    env["SWEEP_MODEL_ROOT"], "--models", models, *([] if args.scaled else ["--full-size"])],
                   cwd=REPO, env=env, check=True)
    report["build_replicas_seconds"] = time.monotonic() - started
    save()
    plan = load_plan()

    def spec(tier: str, run_id: str):
        model_id, values = GRID_POINTS[tier]
        return build_spec(plan, model_id, Hyperparameters(**values),
                          RunParameters(dataset=args.data, max_steps=args.max_steps), dag_id="gpu_check",
                          run_id=run_id, storage=Storage.from_environment(env))

    medium = run_experiment(spec("medium", "plain"), work, "medium", env)
    report["runs"].append(medium)
    save()
    if on_gpu and medium.get("stop_reason") in ("completed", "early_stopped") and medium.get("peak_memory_bytes"):
        # Weights, gradients and two Adam moments in fp32: 16 bytes a parameter; the rest of the
        # peak is activations. Leave room for the static part and 70% of the activations (plus a
        # CUDA context), so per-device batch 16 cannot fit and 8 should.
        static = 16 * medium["parameter_count"]
        activations = medium["peak_memory_bytes"] - static
        target_free = int(1.2 * 2**30 + static + 0.7 * activations)
        free, _ = torch.cuda.mem_get_info()
        holder = ballast(max(free - target_free, 0))
        try:
            oom = run_experiment(spec("medium", "oom-backoff"), work, "medium_oom_backoff", env)
        finally:
            holder.stdin.close()
            holder.wait()
        oom["memory_left_free_bytes"] = target_free
        report["runs"].append(oom)
        save()
    for tier in ("large", "small"):
        if time.monotonic() - began > args.deadline_seconds:
            report.setdefault("skipped", []).append(tier)
            continue
        report["runs"].append(run_experiment(spec(tier, "plain"), work, tier, env))
        save()
    save()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
