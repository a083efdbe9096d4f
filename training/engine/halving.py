"""Successive halving's rules as plain Python over validation curves: the live callback
(engine/pruning.py) decides with them from its peers' rows, and `replay` runs them over the whole
curves of an unpruned sweep, so the bench (scripts/bench_pruning.py) measures what the callback
would have done under any rules, from one set of training runs, and checks itself against a real
pruned run.

A rung is a fraction of a run's planned training samples: of the largest planned run of the grid
(`rungs_of = "grid"`: every run compared after the same amount of data) or of each run's own plan
(`rungs_of = "own"`: 3- and 5-epoch cells compared at the same progress through their own schedule,
where their learning rates have decayed alike). A run's standing at a rung is its best validation F1
so far (what its best checkpoint would be), ties broken by that evaluation's validation loss. It stops
if it is below the top 1/reduction_factor of the runs that reached the rung, unless a safeguard keeps
it: within `noise_z` standard errors of the rung leader's F1 on the validation rows (a difference
validation cannot tell from noise), or the only run of its learning rate that is still in the race.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from training.plan import LEGACY_PRUNING, Pruning

Point = tuple[int, float, float | None]  # (training samples seen, validation F1, validation loss)


@dataclass(frozen=True)
class Curve:
    key: str
    learning_rate: float
    planned_samples: int
    points: tuple[Point, ...]  # in step order
    pruned: bool = False  # stopped by a rung (its points end there)


@dataclass(frozen=True)
class Rules:
    reduction_factor: int = 3
    min_fraction: float = 0.1
    rungs_of: str = "grid"  # "grid" or "own"
    noise_z: float = 0.0  # 0: no noise margin
    keep_one_per_learning_rate: bool = False

    @classmethod
    def of(cls, settings: dict) -> Rules:
        """From a spec's pruning settings, where a rule left out is the rules' before it (LEGACY_PRUNING)."""
        return cls(**{f.name: settings.get(f.name, LEGACY_PRUNING.get(f.name, f.default))
                      for f in dataclasses.fields(cls)})

    def fractions(self) -> list[float]:
        return Pruning(reduction_factor=self.reduction_factor, min_fraction=self.min_fraction).rungs()

    def rung_samples(self, fraction: float, planned: int, reference: int) -> float:
        """The rung in a run's samples: of its own planned samples, or of the reference (largest) run's."""
        return fraction * (planned if self.rungs_of == "own" else reference)

    def safeguards(self) -> list[str]:
        return ([f"a run within {self.noise_z:g} standard errors of the rung leader's F1 continues"]
                if self.noise_z else []) + (
            ["the last run of a learning rate still in the race continues"] if self.keep_one_per_learning_rate else [])


def standing(points, rung_samples: float) -> tuple | None:
    """(best F1 so far, -loss of that evaluation) at the first evaluation at or past the rung; None
    when the points never reach it."""
    best = None
    for samples, f1, loss in points:
        key = (f1, -loss if loss is not None else -math.inf)
        best = key if best is None or key > best else best
        if samples >= rung_samples:
            return best
    return None


def noise_margin(f1: float, rows: int | None, z: float) -> float:
    """z standard errors of an F1 on this many validation rows (a proportion's error; F1 is no
    proportion, but its bootstrap interval on balanced data is close to this)."""
    if not z or not rows:
        return 0.0
    return z * math.sqrt(max(f1 * (1 - f1), 0.0) / rows)


@dataclass(frozen=True)
class Decision:
    rung: int  # 1-based
    fraction: float
    samples: int  # this run's samples seen at the evaluation that decided
    f1: float  # its best validation F1 so far
    threshold_f1: float  # the F1 it had to reach: the lowest kept standing
    peers: int  # peers that had reached the rung
    kept: int  # how many of peers + itself continue by rank
    pruned: bool
    spared: str | None = None  # why a run below the threshold continues (a safeguard)


def decide(rules: Rules, index: int, own: Curve, peers: list[Curve], reference: int,
           validation_rows: int | None) -> Decision | None:
    """The decision at rung `index` for a run whose points have just reached it; None when fewer
    than reduction_factor peers have reached it (nothing to compare with)."""
    fraction = rules.fractions()[index]
    reached = [s for p in peers
               if (s := standing(p.points, rules.rung_samples(fraction, p.planned_samples, reference)))]
    if len(reached) < rules.reduction_factor:
        return None
    own_standing = standing(own.points, rules.rung_samples(fraction, own.planned_samples, reference))
    ranked = sorted([*reached, own_standing], reverse=True)
    kept = max(1, len(ranked) // rules.reduction_factor)
    threshold = ranked[kept - 1]
    pruned, spared = own_standing < threshold, None
    leader = ranked[0][0]
    if pruned and own_standing[0] >= leader - noise_margin(leader, validation_rows, rules.noise_z):
        pruned, spared = False, (f"within validation noise of the leader's {leader:.4f} "
                                 f"({rules.noise_z:g} standard errors on {validation_rows} rows)")
    if pruned and rules.keep_one_per_learning_rate and all(
            p.pruned for p in peers if p.learning_rate == own.learning_rate):
        pruned, spared = False, f"the last run of learning rate {own.learning_rate:g} still in the race"
    return Decision(index + 1, fraction, own.points[-1][0], own_standing[0], threshold[0], len(reached), kept,
                    pruned, spared)


def replay(rules: Rules, curves: list[Curve], reference: int, validation_rows: int | None) -> list[Curve]:
    """The sweep as it would have gone with these rules, the runs one after another in the given
    order (as one GPU slot runs them), each seeing its predecessors as they ended: every curve cut
    where it would have been pruned."""
    done: list[Curve] = []
    for curve in curves:
        decided, points = set(), []
        result = dataclasses.replace(curve, points=tuple(curve.points))
        for point in curve.points:
            points.append(point)
            own = dataclasses.replace(curve, points=tuple(points))
            decision = None
            for index, fraction in enumerate(rules.fractions()):
                if index in decided or point[0] < rules.rung_samples(fraction, curve.planned_samples, reference):
                    continue
                decided.add(index)
                decision = decide(rules, index, own, done, reference, validation_rows)
                if decision is not None and decision.pruned:
                    break
            if decision is not None and decision.pruned:
                result = dataclasses.replace(own, pruned=True)
                break
        done.append(result)
    return done
