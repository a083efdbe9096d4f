"""Result records as the training subprocess writes them, for tests of the store and the report."""

from __future__ import annotations


def result_record(model_id="microsoft/codebert-base", *, run_id="run-1", key=None, learning_rate=2e-5,
                  batch_size=16, validation_f1=0.8, test_f1=0.75, stop_reason="early_stopped", **overrides):
    record = {
        "dag_id": "sweep_small", "run_id": run_id, "run_type": "manual",
        "experiment_key": key or f"{model_id}-{learning_rate}-{batch_size}",
        "tier": "small", "model_id": model_id, "model_source": model_id, "is_stand_in": False,
        "learning_rate": learning_rate, "batch_size": batch_size, "num_epochs": 3, "weight_decay": 0.01,
        "gradient_accumulation_steps": 1, "budget": "full", "dataset_source": "local",
        "dataset_fingerprint": "abc", "validation_f1": validation_f1, "validation_precision": 0.8,
        "validation_recall": 0.8, "validation_accuracy": 0.8, "test_f1": test_f1, "test_precision": 0.7,
        "test_recall": 0.8, "test_accuracy": 0.76, "best_step": 200, "steps_planned": 600, "steps_run": 400,
        "stop_reason": stop_reason, "device": "NVIDIA H100", "gpu_count": 1, "precision": "bf16",
        "wall_seconds": 360.0, "gpu_hours": 0.1, "time_to_best_seconds": 180.0, "checkpoint_path": "/ckpt",
        "eval_points": [{"step": 100, "f1": 0.7}, {"step": 200, "f1": validation_f1}],
        "versions": {"torch": "2.13.0"}, "error": None, "started_at": "2026-11-26T10:00:00+00:00",
        "finished_at": "2026-11-26T10:06:00+00:00", "attempt_count": 1,
    }
    return {**record, **overrides}


CODEBERT, CODET5 = "microsoft/codebert-base", "Salesforce/codet5-small"
PREVIOUS_RUN, LATEST_RUN = "scheduled__2026-11-24T02:00:00+00:00", "scheduled__2026-11-25T02:00:00+00:00"


def warehouse_records() -> list[dict]:
    """Two nightly runs of the small tier, with an early-stopped, a failed and a retried experiment."""
    def record(run_id, model_id, learning_rate, validation_f1, test_f1, stop_reason, gpu_hours, steps_run, **more):
        day = "24" if run_id == PREVIOUS_RUN else "25"
        return result_record(model_id, run_id=run_id, run_type="scheduled", learning_rate=learning_rate,
                             validation_f1=validation_f1, test_f1=test_f1, stop_reason=stop_reason,
                             gpu_hours=gpu_hours, steps_planned=600, steps_run=steps_run,
                             started_at=f"2026-11-{day}T02:0{int(learning_rate * 1e5)}:00+00:00", **more)
    return [
        record(PREVIOUS_RUN, CODEBERT, 2e-5, 0.80, 0.78, "early_stopped", 0.10, 400),
        record(PREVIOUS_RUN, CODEBERT, 5e-5, 0.84, 0.82, "completed", 0.15, 600),
        record(PREVIOUS_RUN, CODET5, 2e-5, 0.70, 0.69, "completed", 0.05, 600),
        record(LATEST_RUN, CODEBERT, 2e-5, 0.85, 0.86, "early_stopped", 0.08, 300,
               attempt_count=2, attempts=[
                   {"attempt": 1, "seconds": 100.0, "gpu_count": 1, "outcome": "interrupted", "last_step": 120},
                   {"attempt": 2, "seconds": 188.0, "gpu_count": 1, "outcome": "early_stopped",
                    "resumed_from_step": 100, "last_step": 300}]),
        record(LATEST_RUN, CODEBERT, 5e-5, 0.83, 0.81, "completed", 0.15, 600),
        record(LATEST_RUN, CODET5, 2e-5, None, None, "failed", 0.01, 0, error="RuntimeError: boom",
               eval_points=[]),
        record(LATEST_RUN, CODET5, 5e-5, 0.75, 0.74, "early_stopped", 0.04, 400),
    ]
