"""`make gpu-bench`: the engine's training step on a GPU, per model of the plan at its largest plan
batch and 512 tokens, with random weights at the published shapes: steps/s, samples/s and MFU for
the eager and the compiled path (compile = true), with and without activation checkpointing for
the large tier, the evaluation forward pass per row, and the time and size of each kind of save (the
model only, as a new best needs; the full resumable state, with the optimizer). Compiled runs twice:
on an empty inductor cache (cold) and on the cache the first left (warm), so compile time and its
break-even step count are measured. T5's attention implementations (eager, sdpa, flex) compared for
logits and speed (scripts/gpu_attention.py). And the whole plan's sweep GPU-hours, naive against
every saving on, from training/results/sweep_cost.py fed with these times (scripts/gpu_bench_report.py).
Everything as JSON and as Markdown for docs/gpu-check.md.

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
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import transformers  # noqa: E402
from gpu_attention import attention_figures  # noqa: E402
from gpu_bench_report import compile_figures, find, markdown, sweep_figure, targets  # noqa: E402
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

# Published shapes: (kind, hidden, layers, heads, feed-forward, vocabulary); the three
# targets first, since a deadline cuts from the end.
SHAPES = {
    "microsoft/codebert-base": ("roberta", 768, 12, 12, 3072, 50265),
    "Salesforce/codet5-base": ("t5", 768, 12, 12, 3072, 32100),
    "Salesforce/codet5-large": ("t5", 1024, 24, 16, 4096, 32100),
    "Salesforce/codet5-small": ("t5", 512, 6, 8, 2048, 32100),
    "Salesforce/codet5p-220m": ("t5", 768, 12, 12, 3072, 32100),
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
    """Wall time of the steps after the first `warmup` (compiling happens in the first), and how long
    training took to get there (seconds_to_warm: compile time shows as its excess over eager's)."""

    def __init__(self, warmup: int):
        self.warmup, self.began, self.started, self.timed = warmup, None, None, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.started = time.perf_counter()
            self.seconds_to_warm = self.started - self.began
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


def evaluation_row_seconds(model, data, batch: int, device: str, dtype, batches: int) -> float:
    """Seconds per validation row of the eager forward pass, as an evaluation runs it (the first
    batch warms up and is not timed)."""
    loader = iter(torch.utils.data.DataLoader(data, batch_size=batch))
    model.eval()
    rows, started = 0, None
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        for index in range(batches + 1):
            inputs = {key: value.to(device) for key, value in next(loader).items()}
            if index == 1:
                if device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            model(**inputs)
            rows += len(inputs["input_ids"]) if index else 0
    if device == "cuda":
        torch.cuda.synchronize()
    model.train()
    return (time.perf_counter() - started) / rows


def one_mode(model_id: str, compiled: bool, checkpointing: bool, args, device: str, precision: str,
             peak: float | None, folder: Path, attention: str | None = None, cache: str | None = None,
             factory=None) -> dict:
    """One model in one mode: steps/s, MFU, memory; for the plain eager mode also the evaluation
    forward pass and the saves. attention: the model's attention implementation (default: sdpa, as
    the engine loads models); cache: "cold" or "warm" inductor cache (compiled modes only); factory:
    () -> (model, vocabulary size), in place of a replica at the published shape (the CPU bench's
    stand-ins)."""
    plan = load_plan()
    tier = plan.tier_of(model_id)
    batch = 4 if args.smoke else max(tier.grid["batch_size"])
    hp = dataclasses.replace(tier.combinations()[-1], batch_size=batch, gradient_accumulation_steps=1)
    spec = dataclasses.replace(build_spec(plan, model_id, hp, RunParameters(max_steps=args.warmup + args.steps)),
                               compile=compiled, gradient_checkpointing=checkpointing)
    torch.manual_seed(0)
    model, vocab = factory() if factory else build_model(model_id, args.smoke)
    if attention:
        model.set_attn_implementation(attention)
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
           "checkpointing": checkpointing, "attention": model.config._attn_implementation, "cache": cache,
           "steps_per_second": steps_per_second, "samples_per_second": steps_per_second * batch,
           "flops_per_step": flops, "mfu": flops * steps_per_second / peak if peak else None,
           "seconds_total": total, "seconds_to_warm": timer.seconds_to_warm,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
    if not compiled and not checkpointing and not attention:  # the evaluation pass and the saves, once per model
        row["evaluation_row_seconds"] = evaluation_row_seconds(model, data, batch, device, dtype, args.steps)
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


def compiled_rows(model_id: str, args, device: str, precision: str, peak, folder: Path) -> list[dict]:
    """The compiled mode twice: on an empty inductor (and Triton) cache, then, after dynamo forgets
    the model, on the cache the first run left: what an experiment pays the first time a host
    compiles a model, and what every later experiment of the model pays with the engine's shared
    cache ($SWEEP_HOME/cache/inductor)."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    rows = []
    for cache in ("cold", "warm"):
        torch._dynamo.reset()
        rows.append(one_mode(model_id, True, False, args, device, precision, peak, folder / cache, cache=cache))
    return rows


def record(report: dict, row: dict, device: str) -> None:
    report["rows"].append(row)
    print(json.dumps(row), flush=True)
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--models", nargs="*", default=list(SHAPES))
    parser.add_argument("--compile-all", action="store_true")
    parser.add_argument("--attention", nargs="*", default=["Salesforce/codet5-base"],
                        help="T5 models whose attention implementations are compared (scripts/gpu_attention.py)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 64 tokens, 2 steps")
    parser.add_argument("--deadline-seconds", type=float, default=420,
                        help="start no further model after this long (a lent GPU's call is 10 minutes at most)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.length = 2, 1, 64
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _, precision, _ = choose_precision(True)
    peak = peak_flops(device)
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "precision": precision,
              "torch": torch.__version__, "peak_tflops": peak / 1e12 if peak else None, "rows": [], "attention": []}
    report["transformers"] = transformers.__version__
    began = time.monotonic()

    def figures():  # after every model, so a run cut short still leaves everything it measured
        report["compile"] = compile_figures(report["rows"], args.warmup)
        report["targets"] = targets(report["rows"])
        report["sweep"] = {"validation as the plan has it": sweep_figure(report["rows"], report["compile"]),
                           "validation capped at 4,000 rows": sweep_figure(report["rows"], report["compile"],
                                                                           max_eval_rows=4000)}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        if args.markdown:
            args.markdown.write_text(markdown(report))

    for model_id in args.models:
        if time.monotonic() - began > args.deadline_seconds:
            report.setdefault("skipped", []).append(model_id)
            continue
        large = load_plan().tier_of(model_id).name == "large"
        for checkpointing in (False, True) if large else (False,):
            with tempfile.TemporaryDirectory() as folder:
                record(report, one_mode(model_id, False, checkpointing, args, device, precision, peak, Path(folder)),
                       device)
        if args.compile_all or model_id in COMPILED_BY_DEFAULT:
            with tempfile.TemporaryDirectory() as folder:
                for row in compiled_rows(model_id, args, device, precision, peak, Path(folder)):
                    record(report, row, device)
        figures()
    # Last: a kernel that indexes out of bounds on a GPU can poison the CUDA context for the rest
    # of the process (FlexAttention's T5 bias does on CPU), so nothing else runs after it.
    for model_id in [m for m in args.attention if find(report["rows"], m)]:
        with tempfile.TemporaryDirectory() as folder:
            entry = attention_figures(model_id, args, device, precision, peak, Path(folder),
                                      find(report["rows"], model_id))
        report["attention"].append(entry)
        print(json.dumps(entry), flush=True)
        figures()
    figures()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
