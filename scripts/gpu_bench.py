"""`make gpu-bench`: the engine's training step on a GPU, per model of the plan at its largest plan
batch and 512 tokens, with random weights at the published shapes: steps/s, samples/s and MFU for
the eager and the compiled path (compile = true), with and without activation checkpointing for
the large tier, and the time and size of each kind of save (the model only, as a new best needs;
the full resumable state, with the optimizer). Everything as JSON and as a Markdown table for
docs/gpu-check.md.

MFU = model FLOPs per step (torch's FlopCounterMode on one forward and backward) x steps/s / the
peak measured by a bf16 matmul in the same process.

    python scripts/gpu_bench.py [--json OUT.json] [--markdown OUT.md] [--steps 20] [--compile-all]
    python scripts/gpu_bench.py --smoke      # tiny shapes on whatever device: checks the script runs

By default only CodeBERT and CodeT5-base (the issue's targets) are also timed compiled, which keeps
a cold inductor cache under about 8 minutes on an H100/H200; --compile-all compiles every model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from gpu_step_time import Batches  # noqa: E402  (random fixed-length batches, one </s> a row)
from transformers import (  # noqa: E402
    RobertaConfig,
    RobertaForSequenceClassification,
    T5Config,
    T5ForSequenceClassification,
    Trainer,
    TrainerCallback,
)

from training.engine.arguments import choose_precision, training_arguments  # noqa: E402
from training.engine.checkpoints import folder_bytes  # noqa: E402
from training.parameters import RunParameters  # noqa: E402
from training.plan import load_plan  # noqa: E402
from training.spec import build_spec  # noqa: E402

# Published shapes: (hidden, layers, heads, feed-forward, vocabulary).
SHAPES = {
    "microsoft/codebert-base": ("roberta", 768, 12, 12, 3072, 50265),
    "Salesforce/codet5-small": ("t5", 512, 6, 8, 2048, 32100),
    "Salesforce/codet5-base": ("t5", 768, 12, 12, 3072, 32100),
    "Salesforce/codet5p-220m": ("t5", 768, 12, 12, 3072, 32100),
    "Salesforce/codet5-large": ("t5", 1024, 24, 16, 4096, 32100),
    "Salesforce/codet5p-770m": ("t5", 1024, 24, 16, 4096, 32100),
}
COMPILED_BY_DEFAULT = ("microsoft/codebert-base", "Salesforce/codet5-base")


def build_model(model_id: str, smoke: bool):
    kind, hidden, layers, heads, ffn, vocab = SHAPES[model_id]
    if smoke:
        hidden, layers, heads, ffn = 64, 2, 2, 128
    if kind == "roberta":
        config = RobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=514,
                               num_labels=2)
        return RobertaForSequenceClassification(config), vocab
    config = T5Config(vocab_size=vocab, d_model=hidden, d_kv=hidden // heads, d_ff=ffn, num_layers=layers,
                      num_heads=heads, num_labels=2, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    return T5ForSequenceClassification(config), vocab


class StepTimer(TrainerCallback):
    """Wall time of the steps after the first `warmup` (compiling happens in the first)."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.timed = warmup, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.started = time.perf_counter()
        elif state.global_step > self.warmup:
            self.timed += 1

    def steps_per_second(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return self.timed / (time.perf_counter() - self.started)


def peak_flops(device: str) -> float | None:
    """bf16 matmul FLOP/s on this device: the MFU denominator."""
    if device != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    started, count = time.perf_counter(), 20
    for _ in range(count):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * count / (time.perf_counter() - started)


def step_flops(model, batch: dict, device: str, dtype) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    inputs = {key: value.to(device) for key, value in batch.items()}
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        model(**inputs).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def one_mode(model_id: str, compiled: bool, checkpointing: bool, args, device: str, precision: str,
             peak: float | None, folder: Path) -> dict:
    plan = load_plan()
    tier = plan.tier_of(model_id)
    batch = max(tier.grid["batch_size"])
    if args.smoke:
        batch = 4
    hp = dataclasses.replace(tier.combinations()[-1], batch_size=batch, gradient_accumulation_steps=1)
    spec = dataclasses.replace(build_spec(plan, model_id, hp, RunParameters(max_steps=args.warmup + args.steps)),
                               compile=compiled, gradient_checkpointing=checkpointing)
    torch.manual_seed(0)
    model, vocab = build_model(model_id, args.smoke)
    data = Batches(batch * (args.warmup + args.steps + 2), args.length, vocab)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else None
    flops = step_flops(model, next(iter(torch.utils.data.DataLoader(data, batch_size=batch))), device, dtype)
    trainer_args = training_arguments(spec, folder / "out", precision, device == "cuda", batch, 1, checkpointing)
    trainer_args = dataclasses.replace(trainer_args, train_sampling_strategy="sequential", eval_strategy="no",
                                       save_strategy="no", load_best_model_at_end=False, logging_strategy="no")
    timer = StepTimer(args.warmup)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = Trainer(model=model, args=trainer_args, train_dataset=data, callbacks=[timer])
    trainer.train()
    total = time.perf_counter() - started
    steps_per_second = timer.steps_per_second()
    row = {"model": model_id, "batch": batch, "length": args.length, "compiled": compiled,
           "checkpointing": checkpointing, "steps_per_second": steps_per_second,
           "samples_per_second": steps_per_second * batch, "flops_per_step": flops,
           "mfu": flops * steps_per_second / peak if peak else None, "seconds_total": total,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
    if not compiled and not checkpointing:  # the saves, once per model
        best, full = folder / "best", folder / "full"
        started = time.perf_counter()
        trainer.save_model(str(best))
        row["save_model_only_s"] = time.perf_counter() - started
        started = time.perf_counter()
        trainer.save_model(str(full))
        torch.save({"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.lr_scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, full / "optimizer_scheduler_rng.pt")
        row["save_full_state_s"] = time.perf_counter() - started
        row["save_model_only_bytes"], row["save_full_state_bytes"] = folder_bytes(best), folder_bytes(full)
    return row


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']}, {report['precision']}, torch {report['torch']}; peak bf16 matmul "
             + (f"{report['peak_tflops']:.0f} TFLOP/s" if report["peak_tflops"] else "not measured (no GPU)") + ".",
             "", "| model | batch x length | compiled | checkpointing | steps/s | samples/s | MFU | peak memory |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "–"
        memory = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "–"
        lines.append(f"| {r['model']} | {r['batch']} x {r['length']} | {r['compiled']} | {r['checkpointing']} | "
                     f"{r['steps_per_second']:.2f} | {r['samples_per_second']:.1f} | {mfu} | {memory} |")
    lines += ["", "| model | model-only save | full resumable save |", "|---|---|---|"]
    for r in report["rows"]:
        if "save_model_only_s" in r:
            model_only = f"{r['save_model_only_s']:.2f} s, {r['save_model_only_bytes'] / 2**30:.2f} GiB"
            full_state = f"{r['save_full_state_s']:.2f} s, {r['save_full_state_bytes'] / 2**30:.2f} GiB"
            lines.append(f"| {r['model']} | {model_only} | {full_state} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--models", nargs="*", default=list(SHAPES))
    parser.add_argument("--compile-all", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 64 tokens, 2 steps")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.length = 2, 1, 64
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _, precision, _ = choose_precision(True)
    peak = peak_flops(device)
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "precision": precision,
              "torch": torch.__version__, "peak_tflops": peak / 1e12 if peak else None, "rows": []}
    for model_id in args.models:
        large = load_plan().tier_of(model_id).name == "large"
        modes = [(False, False)] + ([(False, True)] if large else [])
        if args.compile_all or model_id in COMPILED_BY_DEFAULT:
            modes.append((True, False))
        for compiled, checkpointing in modes:
            with tempfile.TemporaryDirectory() as folder:
                row = one_mode(model_id, compiled, checkpointing, args, device, precision, peak, Path(folder))
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
