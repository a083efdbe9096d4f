"""`make bench`, the pruning part: does successive halving keep the winner on the plan's small grids?

The small tier's grid for both stand-ins at the demo budget, trained unpruned with three training
seeds (the rows stay the plan's data seed's), each run recorded in a real (embedded) Postgres. From
those curves, engine/halving.py's `replay` says what any pruning rules would have done, run by run in
the order they trained: which runs a rung would have cut, where, and what each model's sweep would
then have chosen. One more run of the grid, pruned for real with the plan's rules, checks the replay
(the same runs cut at the same rungs, the same choice).

- pruning_regret: per model and seed, the best validation F1 of the unpruned sweep minus the
  validation F1 of what the pruned sweep chooses (the best evaluation of its chosen run); the figure
  is the worst of them. Target <= 0.01, or within the unpruned winner's validation interval;
- pruning_samples_ratio: training samples of the pruned sweeps / of the unpruned ones, over all
  seeds. Target <= 0.6;
- pruning_replay_matches: the real pruned run did what the replay said.
And a table of other rules on the same curves (rungs of the largest run or of each run's own plan,
reduction factor, first rung, the safeguards), so the plan's choice can be read against them.

The second seed's run also prices the estimate: estimate_ratio is its estimate (from the first
seed's run) / its actual cost. And the saves: checkpoint_bytes_ratio (see scripts/bench.py).

Usage: python scripts/bench_pruning.py [--data DIR] [--work DIR] (a --work kept from an earlier
call reuses its recorded runs, so only the replay runs again).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

SEEDS = (42, 43, 44)
REGRET_TARGET, SAMPLES_TARGET = 0.01, 0.6
TABLE_ROWS = 20


def tier_run(plan, data: Path, url: str, run_id: str, pruning: bool, seed: int | None = None, models=None,
             **overrides) -> list:
    """The small tier's grid for both models (or those given), one experiment after another (as the
    gpu pool's one slot runs them), each recorded as it finishes so later ones see it; a run already
    recorded in full is read back, not trained again. Overrides replace spec fields."""
    from training.engine.experiment import run_experiment
    from training.parameters import RunParameters
    from training.results.store import record_experiment, run_experiments
    from training.spec import build_spec

    tier = plan.tiers["small"]
    expected = len(models or tier.models) * len(tier.combinations())
    if len([r for r in run_experiments(url, "sweep_small", run_id) if r.status == "finished"]) == expected:
        return run_experiments(url, "sweep_small", run_id)
    for model_id in models or tier.models:
        for hp in tier.combinations():
            run = RunParameters(budget="demo", dataset=str(data), pruning=pruning, seed=seed)
            spec = build_spec(plan, model_id, hp, run, dag_id="sweep_small", run_id=run_id, database_url=url)
            record_experiment(url, run_experiment(dataclasses.replace(spec, **overrides)))
    return run_experiments(url, "sweep_small", run_id)


def curves(url: str, run_id: str, model_id: str, rows: list):
    """The model's grid runs of a sweep run as replayable curves, in the order they trained."""
    from training.engine.halving import Curve
    from training.plan import planned_samples
    from training.results.history import peer_points

    by_key = {r.experiment_key: r for r in rows if r.model_id == model_id}
    found = []
    for key, peer in peer_points(url, "sweep_small", run_id, model_id, own_key="").items():
        row = by_key[key]
        planned = planned_samples(row.train_rows, row.batch_size, row.gradient_accumulation_steps, row.num_epochs,
                                  row.max_steps)
        found.append(Curve(key, row.learning_rate, planned, tuple(peer.points), peer.pruned))
    return found, by_key


@dataclasses.dataclass(frozen=True)
class Outcome:
    regret: float
    within_interval: bool  # the pruned choice's F1 is inside the unpruned winner's validation interval
    samples: int
    unpruned_samples: int
    cut: tuple[str, ...]  # the keys the rules cut
    chosen: str


def outcome(rules, runs, by_key, reference: int, validation_rows: int) -> Outcome:
    from training.engine.halving import replay

    pruned = replay(rules, runs, reference, validation_rows)
    best_f1 = {c.key: max(p[1] for p in c.points) for c in pruned}
    unpruned_best = max(runs, key=lambda c: max(p[1] for p in c.points))
    chosen = max(pruned, key=lambda c: best_f1[c.key])
    regret = max(p[1] for p in unpruned_best.points) - best_f1[chosen.key]
    low = by_key[unpruned_best.key].validation_f1_ci_low
    seen = sum(c.points[-1][0] if c.pruned else by_key[c.key].samples_seen for c in pruned)
    return Outcome(regret, low is not None and best_f1[chosen.key] >= low, seen,
                   sum(by_key[c.key].samples_seen for c in runs), tuple(c.key for c in pruned if c.pruned), chosen.key)


def point(row) -> tuple:
    return (row.learning_rate, row.batch_size, row.num_epochs, row.weight_decay)


def candidates(shipped):
    from training.engine.halving import Rules

    rules = [Rules(factor, first, basis, z, keep) for basis, factor, first, z, keep in itertools.product(
        ("grid", "own"), (2, 3, 4), (0.05, 0.1, 0.2, 0.3), (0.0, 0.5, 1.0, 2.0), (False, True))]
    return [shipped, *[r for r in rules if r != shipped]]


def summary(rules, sweeps) -> tuple[float, bool, float]:
    """(worst regret, every regret within target or interval, samples ratio) over every sweep."""
    results = [outcome(rules, *sweep) for sweep in sweeps]
    ok = all(r.regret <= REGRET_TARGET or r.within_interval for r in results)
    return (max(r.regret for r in results), ok,
            sum(r.samples for r in results) / sum(r.unpruned_samples for r in results))


def pruning_figures(plan, data: Path, work: Path, rows_shown: int = TABLE_ROWS) -> dict:
    from training.engine.halving import Rules
    from training.engine.models import resolve_model_source
    from training.parameters import RunParameters
    from training.plan import planned_samples
    from training.results import database
    from training.results.estimates import estimate_tier
    from training.settings import Storage
    from training.spec import pruning_settings

    tier = plan.tiers["small"]
    shipped = Rules.of(pruning_settings(tier, True))
    base = database.start_embedded_server(work / "pgdata")
    try:
        url = database.ensure_database(base, "bench")
        database.migrate(url)
        print(f"\npruning: the small tier at the demo budget, unpruned with seeds {', '.join(map(str, SEEDS))}, "
              "then pruned with the plan's rules (seed 42), then 8 with the full state saved at every evaluation")
        quiet, runs, estimate = io.StringIO(), {}, None
        with contextlib.redirect_stdout(quiet):
            for seed in SEEDS:
                if seed == SEEDS[1]:  # priced from the first seed's run, before it trains
                    no_reruns = dataclasses.replace(plan, settings=dataclasses.replace(plan.settings, confirm_seeds=0))
                    run = RunParameters(budget="demo", dataset=str(data), models=tier.models)
                    estimate = estimate_tier(url, no_reruns, tier, run, {
                        m: resolve_model_source(m, Storage.from_environment().model_root) for m in tier.models})
                runs[seed] = tier_run(plan, data, url, f"unpruned-seed{seed}", pruning=False, seed=seed)
            real_run = f"pruned-seed42-{hashlib.sha256(str(shipped).encode()).hexdigest()[:8]}"  # per rules
            real = tier_run(plan, data, url, real_run, pruning=True, seed=SEEDS[0])
            every = tier_run(plan, data, url, "full-state-every-evaluation", pruning=False, seed=SEEDS[0],
                             models=tier.models[:1], full_checkpoint_minutes=0)
        sweeps, per = [], {}
        for seed, model_id in itertools.product(SEEDS, tier.models):
            found, by_key = curves(url, f"unpruned-seed{seed}", model_id, runs[seed])
            grid = [(b, a, e) for b, a, e in pruning_settings(tier, True)["grid"]]
            row = next(iter(by_key.values()))
            reference = max(planned_samples(row.train_rows, b, a, e, row.max_steps) for b, a, e in grid)
            sweeps.append((found, by_key, reference, row.validation_rows))
            per[(seed, model_id)] = outcome(shipped, *sweeps[-1])
        print(f"  the plan's rules: {shipped}")
        for (seed, model_id), result in per.items():
            print(f"  seed {seed} {model_id}: regret {result.regret:+.4f}"
                  f"{' (within the winner’s interval)' if result.regret and result.within_interval else ''}, "
                  f"{len(result.cut)} of 8 cut, samples {result.samples:,} of {result.unpruned_samples:,}")
        matches = True
        for model_id in tier.models:  # pruning is in the experiment key: compare grid points, not keys
            expected = per[(SEEDS[0], model_id)]
            _, unpruned_rows = curves(url, f"unpruned-seed{SEEDS[0]}", model_id, runs[SEEDS[0]])
            found, real_rows = curves(url, real_run, model_id, real)
            said = sorted(point(unpruned_rows[key]) for key in expected.cut)
            cut = sorted(point(real_rows[c.key]) for c in found if c.pruned)
            matches &= cut == said
            print(f"  {model_id}, pruned for real (seed 42): cut {len(cut)} runs, the replay said {len(said)}"
                  + ("" if cut == said else f" (NOT the same: {cut} against {said})"))
        print(f"\n  {'rules':95} {'worst regret':>12} {'ok':>4} {'samples':>8}")
        table = sorted(((summary(rules, sweeps), rules) for rules in candidates(shipped)),
                       key=lambda item: (not item[0][1], item[0][2]))
        for (worst, ok, ratio), rules in table[:rows_shown]:
            print(f"  {str(rules)[6:-1]:95} {worst:12.4f} {'yes' if ok else 'no':>4} {ratio:8.3f}"
                  + ("  <- the plan's" if rules == shipped else ""))
        print(f"  ({len(table)} rules in all; those that keep the winner first, fewest samples first)")
        worst, ok, ratio = summary(shipped, sweeps)
        figures = {"pruning_regret": worst, "pruning_regret_ok": ok, "pruning_samples_ratio": ratio,
                   "pruning_replay_matches": matches,
                   "pruning_regret_per_model_seed": {f"{m} seed {s}": r.regret for (s, m), r in per.items()}}
        actual = sum(r.wall_seconds or 0 for r in runs[SEEDS[1]]) / 3600
        figures["estimate_ratio"] = estimate.total() / actual if actual and not estimate.unpriced else None
        written = {name: sum(r.checkpoint_bytes_written or 0 for r in rows if r.model_id == tier.models[0])
                   for name, rows in (("planned", runs[SEEDS[0]]), ("every", every))}
        figures["checkpoint_bytes_ratio"] = written["every"] / written["planned"] if written["planned"] else None
        saves, ratio_estimate = figures["checkpoint_bytes_ratio"], figures["estimate_ratio"]
        print("\nestimate_ratio " + (f"{ratio_estimate:.3f} (the seed-43 run: {estimate.total():.4f} estimated, "
                                      f"{actual:.4f} actual CPU-hours; target 0.75-1.25)" if ratio_estimate
                                      else "unavailable")
              + ", checkpoint_bytes_ratio " + (f"{saves:.2f} (target >= 3)" if saves else "unavailable"))
        print(f"pruning_regret {worst:.4f} (target <= {REGRET_TARGET} or within the interval: "
              f"{'met' if ok else 'NOT met'}), pruning_samples_ratio {ratio:.3f} (target <= {SAMPLES_TARGET}), "
              f"pruning_replay_matches {matches}")
        from bench_sweep_cost import sweep_cost_figures  # the sweep's cost, naive against every saving

        run_id = f"unpruned-seed{SEEDS[0]}"
        figures.update(sweep_cost_figures(plan, data, runs[SEEDS[0]],
                                          lambda m: curves(url, run_id, m, runs[SEEDS[0]])[0], ratio))
        return figures
    finally:
        database.stop_embedded_server(work / "pgdata")


def main() -> int:
    from bench import DEFAULT_DATA  # scripts/bench.py

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SWEEP_BENCH_DATA", DEFAULT_DATA)))
    parser.add_argument("--work", type=Path, default=None, help="keep (or reuse) the recorded runs here")
    parser.add_argument("--all-rules", action="store_true", help="print every replayed rule, not the first 20")
    args = parser.parse_args()
    from training.offline.standins import build_stand_ins
    from training.plan import load_plan

    work = (args.work or Path(tempfile.mkdtemp(prefix="sweep-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update(SWEEP_HOME=str(work), SWEEP_MODEL_ROOT=str(work / "models"))
    try:
        plan = load_plan()
        build_stand_ins(plan, args.data, work / "models", 512, model_ids=plan.tiers["small"].models)
        pruning_figures(plan, args.data, work, 10_000 if args.all_rules else TABLE_ROWS)
    finally:
        if args.work is None:  # a folder of one's own naming is kept for the next run to reuse
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
