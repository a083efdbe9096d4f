"""What production needs to know about a best checkpoint: how fast it answers (latency at batch 1,
throughput at batch 32, on the device it trained on) and how big it is. How sure its test F1 is
(the bootstrap interval) is in training/results/statistics.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

LATENCY_REPEATS = 20
THROUGHPUT_BATCH = 32


def _batches(dataset, collator, batch_size: int, count: int, device):
    rows = [dataset[i % len(dataset)] for i in range(batch_size * count)]
    for start in range(0, len(rows), batch_size):
        features = [{k: v for k, v in row.items() if k in ("input_ids", "attention_mask")}
                    for row in rows[start:start + batch_size]]
        yield {k: v.to(device) for k, v in collator(features).items()}


@torch.inference_mode()
def inference_speed(model, dataset, collator) -> dict[str, float]:
    """Median latency of one example, and examples per second at batch 32, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(batch) -> float:
        synchronize()
        started = time.perf_counter()
        model(**batch)
        synchronize()
        return time.perf_counter() - started

    singles = list(_batches(dataset, collator, 1, LATENCY_REPEATS + 3, device))
    latencies = [timed(batch) for batch in singles][3:]  # the first calls warm up kernels and caches
    bulk = list(_batches(dataset, collator, THROUGHPUT_BATCH, 4, device))
    timed(bulk[0])
    seconds = sum(timed(batch) for batch in bulk[1:])
    return {"latency_batch1_ms": float(np.median(latencies) * 1000),
            "throughput_batch32_per_second": THROUGHPUT_BATCH * (len(bulk) - 1) / seconds}


def model_size(model, folder: Path) -> dict[str, int]:
    return {"parameter_count": sum(p.numel() for p in model.parameters()),
            "model_size_bytes": sum(p.stat().st_size for p in folder.glob("*.safetensors"))}
