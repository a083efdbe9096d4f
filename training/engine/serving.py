"""What production needs to know about a best checkpoint: how fast it answers (latency at batch 1,
throughput at batch 32, on the device it trained on) and how big it is. How sure its test F1 is
(the bootstrap interval) is in training/results/statistics.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

SPEED_ROWS = 64  # both figures are measured on the same test rows, so they can be compared
WARM_UP = 3
THROUGHPUT_BATCH = 32


def _batches(dataset, collator, batch_size: int, count: int, device):
    """count rows of the dataset (wrapping around a smaller one) in batches, padded as served."""
    rows = [dataset[i % len(dataset)] for i in range(count)]
    for start in range(0, len(rows), batch_size):
        features = [{k: v for k, v in row.items() if k in ("input_ids", "attention_mask")}
                    for row in rows[start:start + batch_size]]
        yield {k: v.to(device) for k, v in collator(features).items()}


@torch.inference_mode()
def inference_speed(model, dataset, collator) -> dict[str, float]:
    """On the model's device, over the same SPEED_ROWS test rows: the median latency of one row at
    a time, and rows per second in batches of 32 (each padded to its longest row, as a server would
    batch them). A report once put 0.5 ms at batch 1 beside 87 rows/s at batch 32: the latency came
    from the first 23 rows and the throughput from 128 others, so the two did not describe the same
    work."""
    model.eval()
    device = next(model.parameters()).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(batch) -> float:
        synchronize()
        started = time.perf_counter()
        model(**batch)
        synchronize()
        return time.perf_counter() - started

    for batch in _batches(dataset, collator, 1, WARM_UP, device):  # kernels and caches
        timed(batch)
    latencies = [timed(batch) for batch in _batches(dataset, collator, 1, SPEED_ROWS, device)]
    bulk = list(_batches(dataset, collator, THROUGHPUT_BATCH, SPEED_ROWS, device))
    timed(bulk[0])  # the batch shape's own warm-up
    seconds = sum(timed(batch) for batch in bulk)
    return {"latency_batch1_ms": float(np.median(latencies) * 1000),
            "throughput_batch32_per_second": SPEED_ROWS / seconds}


def model_size(model, folder: Path) -> dict[str, int]:
    return {"parameter_count": sum(p.numel() for p in model.parameters()),
            "model_size_bytes": sum(p.stat().st_size for p in folder.glob("*.safetensors"))}
