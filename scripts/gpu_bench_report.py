"""`make gpu-bench`'s figures from its measured rows: the issue's targets, compile time and its
break-even, and the whole sweep's GPU-hours naive against every saving (training/results/sweep_cost.py
fed with the measured step, evaluation, save and compile times); and the Markdown for docs/gpu-check.md.
"""

from __future__ import annotations

# The plan's full budget trains on the hub dataset as it is (CodeXGLUE BigCloneBench's splits).
HUB_ROWS = {"train": 901_028, "validation": 415_416, "test": 415_416}
# What the CPU bench measured for the plan's pruning rules (docs/BENCHMARKS.md, scripts/bench_pruning.py).
MEASURED_PRUNING_SAMPLES_RATIO = 0.692


def find(rows: list[dict], model: str, **wanted) -> dict | None:
    defaults = {"compiled": False, "checkpointing": False, "attention": "sdpa", "cache": None}
    wanted = {**defaults, **wanted}
    return next((r for r in rows if r["model"] == model and all(r.get(k) == v for k, v in wanted.items())), None)


def compile_figures(rows: list[dict], warmup: int) -> dict:
    """Per compiled model: cold and warm compile seconds (the compiled run's time to its first
    `warmup` steps beyond what those steps take, less eager's same excess), the break-even step
    count of each (compile seconds / seconds saved per step, warm) and the compiled speedup."""
    def excess(row):
        return row["seconds_to_warm"] - warmup / row["steps_per_second"]

    figures = {}
    for model in sorted({r["model"] for r in rows if r["compiled"]}):
        eager = find(rows, model)
        compiled = {cache: find(rows, model, compiled=True, cache=cache) for cache in ("cold", "warm")}
        if eager is None:
            continue
        fastest = compiled["warm"] or compiled["cold"]
        saved = 1 / eager["steps_per_second"] - 1 / compiled["warm"]["steps_per_second"] if compiled["warm"] else 0.0
        entry = {"speedup": fastest["steps_per_second"] / eager["steps_per_second"]} if fastest else {}
        for cache, row in compiled.items():
            if row:
                entry[f"{cache}_seconds"] = max(excess(row) - excess(eager), 0.0)
                entry[f"break_even_steps_{cache}"] = entry[f"{cache}_seconds"] / saved if saved > 0 else None
        figures[model] = entry
    return figures


def targets(rows: list[dict]) -> dict:
    """The issue's three targets, each against eager in the same run (None: not measured)."""
    codebert = find(rows, "microsoft/codebert-base", compiled=True, cache="warm")
    base_eager = find(rows, "Salesforce/codet5-base")
    base_compiled = find(rows, "Salesforce/codet5-base", compiled=True, cache="warm")
    large_auto, large_always = find(rows, "Salesforce/codet5-large"), find(rows, "Salesforce/codet5-large",
                                                                           checkpointing=True)
    return {
        "codebert_compiled_mfu": codebert and codebert["mfu"],  # target >= 0.35
        "codet5_base_compiled_speedup": base_eager and base_compiled
        and base_compiled["steps_per_second"] / base_eager["steps_per_second"],  # target >= 1.6
        # "auto" checkpointing runs without it unless the batch does not fit (it fits on these cards)
        "codet5_large_auto_over_always_checkpointed": large_auto and large_always
        and large_auto["steps_per_second"] / large_always["steps_per_second"],  # target >= 1.5
    }


def model_costs(rows: list[dict], compiled: dict):
    from training.results.sweep_cost import ModelCost

    costs = {}
    for model in sorted({r["model"] for r in rows}):
        eager = find(rows, model)
        if not eager or "evaluation_row_seconds" not in eager:
            continue
        warm = find(rows, model, compiled=True, cache="warm")
        always = find(rows, model, checkpointing=True)
        costs[model] = ModelCost(
            batch=eager["batch"], eager_step_seconds=1 / eager["steps_per_second"],
            evaluation_row_seconds=eager["evaluation_row_seconds"], save_model_seconds=eager["save_model_only_s"],
            save_full_seconds=eager["save_full_state_s"],
            compiled_step_seconds=warm and 1 / warm["steps_per_second"],
            checkpointed_step_seconds=always and 1 / always["steps_per_second"],
            compile_cold_seconds=compiled.get(model, {}).get("cold_seconds", 0.0),
            compile_warm_seconds=compiled.get(model, {}).get("warm_seconds", 0.0))
    return costs


def sweep_figure(rows: list[dict], compiled: dict, rows_of=HUB_ROWS, trained_share: float = 1.0,
                 pruning_samples_ratio: float = MEASURED_PRUNING_SAMPLES_RATIO,
                 max_eval_rows: int | None = None) -> dict:
    """The plan's sweep in GPU-hours, naive and with every saving, for the models measured."""
    from training.plan import load_plan
    from training.results.sweep_cost import Data, compare

    costs = model_costs(rows, compiled)
    validation = min(rows_of["validation"], max_eval_rows or rows_of["validation"])
    data = Data(rows_of["train"], validation, rows_of["test"], trained_share=trained_share)
    naive, saving = compare(load_plan(), costs, data, pruning_samples_ratio)
    return {"models": sorted(costs), "experiments": naive.experiments, "naive_gpu_hours": naive.hours,
            "savings_gpu_hours": saving.hours, "ratio": saving.hours / naive.hours if naive.hours else None,
            "naive_shares": naive.shares(), "savings_shares": saving.shares(), "validation_rows": validation,
            "train_rows": rows_of["train"], "trained_share": trained_share,
            "pruning_samples_ratio": pruning_samples_ratio}


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']}, {report['precision']}, torch {report['torch']}, transformers "
             f"{report.get('transformers')}; peak bf16 matmul "
             + (f"{report['peak_tflops']:.0f} TFLOP/s" if report["peak_tflops"] else "not measured (no GPU)") + ".",
             "", "| model | batch x length | compiled (cache) | checkpointing | attention | steps/s | samples/s | MFU "
             "| peak memory |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "–"
        memory = f"{r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else "–"
        compiled = f"yes ({r['cache']})" if r["compiled"] else "no"
        lines.append(f"| {r['model']} | {r['batch']} x {r['length']} | {compiled} | {r['checkpointing']} | "
                     f"{r['attention']} | {r['steps_per_second']:.2f} | {r['samples_per_second']:.1f} | {mfu} | "
                     f"{memory} |")
    lines += ["", "| model | evaluation, per row | model-only save | full resumable save |", "|---|---|---|---|"]
    for r in report["rows"]:
        if "save_model_only_s" in r:
            model_only = f"{r['save_model_only_s']:.2f} s, {r['save_model_only_bytes'] / 2**30:.2f} GiB"
            full_state = f"{r['save_full_state_s']:.2f} s, {r['save_full_state_bytes'] / 2**30:.2f} GiB"
            lines.append(f"| {r['model']} | {r['evaluation_row_seconds'] * 1000:.2f} ms | {model_only} | "
                         f"{full_state} |")
    for model, entry in report.get("compile", {}).items():
        lines.append(f"\nCompile, {model}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in entry.items()))
    for name, value in report.get("targets", {}).items():
        lines.append(f"\nTarget {name}: " + ("not measured" if value is None else f"{value:.3f}"))
    for entry in report.get("attention", []):
        lines.append(f"\nAttention, {entry['model']}: {entry}")
    for label, figure in report.get("sweep", {}).items():
        lines.append(f"\nSweep ({label}): naive {figure['naive_gpu_hours']:.1f} GPU-hours ({figure['naive_shares']}), "
                     f"every saving {figure['savings_gpu_hours']:.1f} ({figure['savings_shares']}): ratio "
                     f"{figure['ratio']:.3f} (goal <= 0.4) over {figure['experiments']} experiments of "
                     f"{', '.join(figure['models'])}")
    return "\n".join(lines) + "\n"
