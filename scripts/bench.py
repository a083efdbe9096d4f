"""`make bench`: what the training engine saves, measured on BigCloneBench pairs with stand-in
models of both architectures, against the CodeXGLUE scripts' way in the same process.

- padding ratio: tokens the model processes per epoch / real tokens, ours (dynamic padding,
  length-grouped batches) vs padding every example to the max length;
- epoch time ratio: data preparation plus one training epoch, ours vs the naive baseline (pad to
  512, random order, re-tokenize for every experiment);
- prep reuse ratio: the second experiment's data preparation time / the first's (tokenized cache).

And what successive halving saves (training/engine/pruning.py), with a real (embedded) Postgres: the
small tier's grid for both models at the demo budget, three times in one process: as the plan is
written, again as written (the second run's GPU-hour estimate, from the first, against its actual
cost: CPU-hours here), and with pruning on (reduction factor 3, rungs from 10%):

- pruning_samples_ratio: training samples of the pruned run / of the first unpruned run;
- pruning_same_best: whether each model's best configuration by validation F1 is the same (if not,
  which it picked and how much validation F1 it lost is printed);
- estimate_ratio: the second unpruned run's estimate / its actual cost (the tier).

And what the saves write (training/engine/checkpoints.py): the CodeBERT stand-in's eight grid points
of the first unpruned run (a new best saves the model only, the full state every 30 minutes) against
the same eight again with the full state at every evaluation (full_checkpoint_minutes = 0, how every
save was written before):

- checkpoint_bytes_ratio: bytes written by the saves, full state at every evaluation / as planned.

And the training time lost to uploads to an artifact store (scripts/bench_uploads.py).

Usage: python scripts/bench.py [--data DIR] [--json OUT.json] [--train-samples N] [--no-pruning]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
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

    import torch

    from training.offline.standins import build_stand_ins
    from training.parameters import RunParameters
    from training.plan import Hyperparameters, load_plan
    from training.spec import build_spec

    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
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
        figures.update(pruning_figures(plan, args.data, work))
    from bench_uploads import upload_figures  # scripts/bench_uploads.py: training time lost to uploads

    figures.update(upload_figures(plan, args.data, work, args.train_samples))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")
    return 0


def tier_run(plan, data: Path, url: str, run_id: str, pruning: bool, models=None, **overrides) -> list:
    """The small tier's grid for both models (or those given), one experiment after another (as the
    gpu pool's one slot runs them), each recorded as it finishes so later ones see it; overrides
    replace spec fields."""
    from training.engine.experiment import run_experiment
    from training.parameters import RunParameters
    from training.results.store import record_experiment, run_experiments
    from training.spec import build_spec

    tier = plan.tiers["small"]
    for model_id in models or tier.models:
        for hp in tier.combinations():
            spec = build_spec(plan, model_id, hp, RunParameters(budget="demo", dataset=str(data), pruning=pruning),
                              dag_id="sweep_small", run_id=run_id, database_url=url)
            record_experiment(url, run_experiment(dataclasses.replace(spec, **overrides)))
    return run_experiments(url, "sweep_small", run_id)


def pruning_figures(plan, data: Path, work: Path) -> dict:
    import contextlib
    import io

    from training.engine.models import resolve_model_source
    from training.parameters import RunParameters
    from training.results import database
    from training.results.estimates import estimate_tier
    from training.results.selection import best_of
    from training.settings import Storage

    base = database.start_embedded_server(work / "pgdata")
    try:
        url = database.ensure_database(base, "bench")
        database.migrate(url)
        tier, quiet = plan.tiers["small"], io.StringIO()
        print("\npruning: the small tier at the demo budget, three runs of 16 experiments (a few minutes each), "
              "then 8 with the full state saved at every evaluation")

        def cost(rows):
            return sum(r.gpu_hours if r.gpu_count else (r.wall_seconds or 0) / 3600 for r in rows)

        with contextlib.redirect_stdout(quiet):
            first = tier_run(plan, data, url, "unpruned-1", pruning=False)
            storage = Storage.from_environment()
            run = RunParameters(budget="demo", dataset=str(data), models=tier.models)
            no_reruns = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, confirm_seeds=0))
            estimate = estimate_tier(url, no_reruns, tier, run,
                                     {m: resolve_model_source(m, storage.model_root) for m in tier.models})
            second = tier_run(plan, data, url, "unpruned-2", pruning=False)
            pruned = tier_run(plan, data, url, "pruned", pruning=True)
            every = tier_run(plan, data, url, "full-state-every-evaluation", pruning=False, models=MODELS[:1],
                             full_checkpoint_minutes=0)
        samples = {name: sum(r.samples_seen or 0 for r in rows)
                   for name, rows in (("unpruned", first), ("pruned", pruned))}
        same, lines = True, []
        for model_id in tier.models:
            a = best_of([r for r in first if r.model_id == model_id])
            b = best_of([r for r in pruned if r.model_id == model_id])
            key = lambda r: (r.learning_rate, r.batch_size, r.num_epochs, r.weight_decay)  # noqa: E731
            agrees = a is not None and b is not None and key(a) == key(b)
            same &= agrees
            lines.append(f"  {model_id}: unpruned best {key(a) if a else None} (validation F1 "
                         f"{a.validation_f1 if a else float('nan'):.3f}), pruned best {key(b) if b else None} "
                         f"(validation F1 {b.validation_f1 if b else float('nan'):.3f})"
                         + ("" if agrees else f": not the same, {(a.validation_f1 - b.validation_f1):+.3f} F1 lost"
                            if a and b else ""))
        pruned_count = sum(r.stop_reason == "pruned" for r in pruned)
        actual = cost(second)
        written = {name: sum(r.checkpoint_bytes_written or 0 for r in rows if r.model_id == MODELS[0])
                   for name, rows in (("planned", first), ("every", every))}
        figures = {"pruning_samples_ratio": samples["pruned"] / samples["unpruned"], "pruning_same_best": same,
                   "estimate_ratio": estimate.total() / actual if actual and not estimate.unpriced else None,
                   "checkpoint_bytes_ratio": written["every"] / written["planned"] if written["planned"] else None}
        print(f"  training samples: unpruned {samples['unpruned']:,}, pruned {samples['pruned']:,} "
              f"({pruned_count} of {len(pruned)} runs pruned)")
        print("\n".join(lines))
        print(f"  CPU-hours: unpruned {cost(first):.4f}, second unpruned {actual:.4f} (estimated "
              f"{estimate.total():.4f}, {len(estimate.unpriced)} unpriced), pruned {cost(pruned):.4f}")
        print(f"  saves of {MODELS[0]}'s 8 runs: {written['planned'] / 2**20:,.1f} MiB as planned "
              f"({sum(r.full_checkpoints_saved or 0 for r in first if r.model_id == MODELS[0])} full, "
              f"{sum(r.model_checkpoints_saved or 0 for r in first if r.model_id == MODELS[0])} model-only), "
              f"{written['every'] / 2**20:,.1f} MiB with the full state at every evaluation")
        ratio, saves = figures["estimate_ratio"], figures["checkpoint_bytes_ratio"]
        print("checkpoint_bytes_ratio " + (f"{saves:.2f} (target >= 3)" if saves else "unavailable"))
        print(f"\npruning_samples_ratio {figures['pruning_samples_ratio']:.3f} (target <= 0.5), pruning_same_best "
              f"{same}, estimate_ratio " + (f"{ratio:.3f} (target 0.75-1.25)" if ratio else "unavailable"))
        return figures
    finally:
        database.stop_embedded_server(work / "pgdata")


if __name__ == "__main__":
    sys.exit(main())
