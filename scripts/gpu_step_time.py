"""Where a training step's time goes on a GPU: the same model and batches timed in a plain PyTorch
loop and through the Trainer with the engine's arguments (no evaluations, no checkpoints).

If both are slow, the step is bound by kernel launches on the host (small batches of short
sequences), not by the engine; if only the Trainer is slow, the engine's settings cost the time.

    python scripts/gpu_step_time.py [--hidden 768 --layers 12 --heads 12 --ffn 3072] [--steps 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import T5Config, T5ForSequenceClassification, Trainer  # noqa: E402

from training.engine.arguments import choose_precision, training_arguments  # noqa: E402
from training.parameters import RunParameters  # noqa: E402
from training.plan import Hyperparameters, load_plan  # noqa: E402
from training.spec import build_spec  # noqa: E402


class Batches(torch.utils.data.Dataset):
    def __init__(self, count: int, length: int, vocab: int):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, vocab, (count, length), generator=generator)
        self.ids[:, -1] = 2  # one </s> a row: T5's classifier reads its hidden state
        self.labels = torch.randint(0, 2, (count,), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "attention_mask": torch.ones_like(self.ids[index]),
                "labels": self.labels[index]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=3072)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=112)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    _, precision, _ = choose_precision(True)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else None
    config = T5Config(vocab_size=32100, d_model=args.hidden, d_kv=args.hidden // args.heads, d_ff=args.ffn,
                      num_layers=args.layers, num_heads=args.heads, num_labels=2, pad_token_id=0, eos_token_id=2,
                      decoder_start_token_id=0)
    data = Batches(args.batch * (args.steps + 5), args.length, 32100)
    report = {"device": torch.cuda.get_device_name(0) if on_gpu else "cpu", "precision": precision,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "batch": args.batch,
              "length": args.length, "steps": args.steps}

    # 1. A plain loop: autocast, AdamW (fused where there is a GPU), nothing else.
    torch.manual_seed(0)
    model = T5ForSequenceClassification(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=on_gpu)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, pin_memory=on_gpu)

    def plain_steps(count):
        for step, batch in enumerate(loader):
            if step == count:
                break
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if on_gpu:
            torch.cuda.synchronize()

    plain_steps(5)
    started = time.perf_counter()
    plain_steps(args.steps)
    report["plain_steps_per_second"] = args.steps / (time.perf_counter() - started)
    model = optimizer = None  # free them before the Trainer builds its own

    # 2. The Trainer with the engine's arguments for a medium-tier grid point; no evaluation or save
    # inside the timed steps.
    plan = load_plan()
    spec = build_spec(plan, "Salesforce/codet5-base", Hyperparameters(5e-5, 16, 3, 0.01, 1),
                      RunParameters(max_steps=args.steps + 5))
    torch.manual_seed(0)
    model = T5ForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as folder:
        trainer_args = training_arguments(spec, Path(folder), precision, on_gpu, args.batch, 1)
        trainer_args = dataclasses.replace(  # no length column in these batches; nothing to evaluate
            trainer_args, train_sampling_strategy="sequential", eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False)
        trainer = Trainer(model=model, args=trainer_args, train_dataset=data)
        metrics = trainer.train().metrics
    report["trainer_steps_per_second"] = metrics["train_steps_per_second"]
    report["trainer_over_plain"] = report["plain_steps_per_second"] / report["trainer_steps_per_second"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
