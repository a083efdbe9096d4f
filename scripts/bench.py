"""`make bench`: what the training engine saves, measured on BigCloneBench pairs with stand-in
models of both architectures, against the CodeXGLUE scripts' way in the same process.

- padding ratio: tokens the model processes per epoch / real tokens, ours (dynamic padding,
  length-grouped batches) vs padding every example to the max length;
- epoch time ratio: data preparation plus one training epoch, ours vs the naive baseline (pad to
  512, random order, re-tokenize for every experiment);
- prep reuse ratio: the second experiment's data preparation time / the first's (tokenized cache).

And what successive halving saves and whether it keeps the winner (scripts/bench_pruning.py: the small
tier's grid for both models at the demo budget, unpruned with three training seeds, replayed under the
plan's pruning rules and others, and one run pruned for real to check the replay):
pruning_regret, pruning_samples_ratio, pruning_replay_matches; estimate_ratio (the second seed's run
priced from the first); checkpoint_bytes_ratio (bytes written by the saves of the CodeBERT stand-in's
eight grid points with the full state at every evaluation / as planned: a new best saves the model
only, the full state every 30 minutes); sweep_cost_model_ratio and sweep_savings_ratio_cpu (the sweep
cost model checked against the recorded sweep, then naive against every saving: scripts/bench_sweep_cost.py).

And the training time lost to uploads to an artifact store (scripts/bench_uploads.py).

Usage: python scripts/bench.py [--data DIR] [--json OUT.json] [--train-samples N] [--no-pruning]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bigclonebench" / "subsets"
MODELS = ("microsoft/codebert-base", "Salesforce/codet5-small")  # one RoBERTa, one T5
BATCH_SIZE, MAX_LENGTH = 16, 512


def prepare(spec, plan_settings_seed: int, cache_root: Path):
    """Our data preparation: load, fingerprint, tokenize or reuse the cache. Returns (splits, seconds)."""
    from transformers import AutoTokenizer

    from training.engine.prepare import prepare as prepare_experiment
    from training.engine.tokenization import tokenized_splits

    started = time.perf_counter()
    prepared = prepare_experiment(spec)
    tokenizer = AutoTokenizer.from_pretrained(prepared.identity.model_source)
    caps = {"train": spec.max_train_samples, "eval": spec.max_eval_samples, "seed": plan_settings_seed}
    tokenized = tokenized_splits(prepared.splits, tokenizer, prepared.dataset_spec, prepared.label_values,
                                 MAX_LENGTH, prepared.fingerprint, caps, cache_root, log=lambda message: None)
    return tokenized, tokenizer, time.perf_counter() - started


def prepare_naive(spec):
    """The CodeXGLUE way: tokenize again for this experiment, padded to the max length."""
    from transformers import AutoTokenizer

    from training.engine.prepare import prepare as prepare_experiment

    started = time.perf_counter()
    prepared = prepare_experiment(spec)
    dataset_spec, splits = prepared.dataset_spec, prepared.splits
    tokenizer = AutoTokenizer.from_pretrained(prepared.identity.model_source)
    index = {value: i for i, value in enumerate(prepared.label_values)}

    def encode(batch):
        encoded = tokenizer(*[batch[c] for c in dataset_spec.text_columns], truncation=True,
                            max_length=MAX_LENGTH, padding="max_length")
        encoded["labels"] = [index[v] for v in batch[dataset_spec.label_column]]
        return encoded

    tokenized = splits.map(encode, batched=True, remove_columns=splits["train"].column_names,
                           load_from_cache_file=False)
    return tokenized, tokenizer, time.perf_counter() - started


def one_epoch(spec, tokenized, tokenizer, naive: bool, output_dir: Path) -> tuple[float, float]:
    """Train one epoch without evaluation; return (seconds, padded tokens / real tokens)."""
    from transformers import DataCollatorWithPadding, Trainer, default_data_collator

    from training.engine.arguments import training_arguments
    from training.engine.models import load_tokenizer_and_model, resolve_model_source

    _, model = load_tokenizer_and_model(resolve_model_source(spec.model_id, spec.runtime().model_root), [False, True])
    args = training_arguments(spec, output_dir, "fp32", False, BATCH_SIZE, 1)
    args = dataclasses.replace(args, num_train_epochs=1, max_steps=-1, eval_strategy="no", save_strategy="no",
                               load_best_model_at_end=False, logging_strategy="no",
                               train_sampling_strategy="random" if naive else "group_by_length")
    trainer = Trainer(model=model, args=args, train_dataset=tokenized["train"], processing_class=tokenizer,
                      data_collator=default_data_collator if naive else DataCollatorWithPadding(tokenizer))
    processed = real = 0
    for batch in trainer.get_train_dataloader():
        processed += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, processed / real


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SWEEP_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--no-pruning", action="store_true", help="leave out the pruning and estimate figures")
    args = parser.parse_args()
    if not (args.data / "train.jsonl").is_file():
        print(f"benchmark skipped: no BigCloneBench subsets at {args.data} (set --data or SWEEP_BENCH_DATA)")
        return 0

    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    try:
        return measure(args, work)
    finally:  # stand-ins, checkpoints and recorded runs: a few GB a run, gone once the figures are out
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work: Path) -> int:
    """Every figure of `make bench`, with its scratch under work."""
    import torch

    from training.offline.standins import build_stand_ins
    from training.parameters import RunParameters
    from training.plan import Hyperparameters, load_plan
    from training.spec import build_spec

    os.environ.update(SWEEP_HOME=str(work), SWEEP_MODEL_ROOT=str(work / "models"))
    plan = load_plan()
    build_stand_ins(plan, args.data, work / "models", MAX_LENGTH, model_ids=MODELS)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; {args.train_samples} training pairs")

    rows, figures = [], {}
    for index, model_id in enumerate(MODELS):
        spec = build_spec(plan, model_id, Hyperparameters(5e-5, BATCH_SIZE, 1, 0.01, 1),
                          RunParameters(dataset=str(args.data)))
        spec = dataclasses.replace(spec, max_train_samples=args.train_samples, max_eval_samples=64)
        # The stand-ins share one tokenizer: a cache per model, so each model's first prep is a miss.
        cache_root = work / "cache" / str(index)
        tokenized, tokenizer, first_prep = prepare(spec, plan.settings.seed, cache_root)
        _, _, second_prep = prepare(dataclasses.replace(
            spec, hyperparameters=Hyperparameters(2e-5, BATCH_SIZE, 1, 0.01, 1)), plan.settings.seed, cache_root)
        ours_seconds, ours_padding = one_epoch(spec, tokenized, tokenizer, False, work / f"ours-{index}")
        naive_tokenized, naive_tokenizer, naive_prep = prepare_naive(spec)
        naive_seconds, naive_padding = one_epoch(spec, naive_tokenized, naive_tokenizer, True, work / f"naive-{index}")
        row = {"model": f"{model_id} (stand-in)", "padding_ours": ours_padding, "padding_max_length": naive_padding,
               "epoch_ours_s": second_prep + ours_seconds, "epoch_naive_s": naive_prep + naive_seconds,
               "prep_first_s": first_prep, "prep_second_s": second_prep}
        rows.append(row)
        print(json.dumps(row))

    figures = {
        "padding_ratio": max(r["padding_ours"] for r in rows),
        "epoch_time_ratio": max(r["epoch_ours_s"] / r["epoch_naive_s"] for r in rows),
        "prep_reuse_ratio": max(r["prep_second_s"] / r["prep_first_s"] for r in rows),
    }
    print(f"\n{'model':42} {'pad ours':>9} {'pad max':>8} {'epoch ours':>11} {'epoch naive':>12} "
          f"{'prep 1st':>9} {'prep 2nd':>9}")
    for r in rows:
        print(f"{r['model']:42} {r['padding_ours']:9.3f} {r['padding_max_length']:8.3f} {r['epoch_ours_s']:10.1f}s "
              f"{r['epoch_naive_s']:11.1f}s {r['prep_first_s']:8.2f}s {r['prep_second_s']:8.2f}s")
    print(f"\npadding_ratio {figures['padding_ratio']:.3f} (target <= 1.10), epoch_time_ratio "
          f"{figures['epoch_time_ratio']:.3f} (target <= 0.6), prep_reuse_ratio {figures['prep_reuse_ratio']:.3f} "
          f"(target <= 0.1); worst of the two models each")
    if not args.no_pruning:
        from bench_pruning import pruning_figures  # scripts/bench_pruning.py: pruning that keeps the winner

        figures.update(pruning_figures(plan, args.data, work))
    from bench_uploads import upload_figures  # scripts/bench_uploads.py: training time lost to uploads

    figures.update(upload_figures(plan, args.data, work, args.train_samples))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
