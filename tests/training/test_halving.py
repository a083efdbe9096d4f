"""Successive halving's rules over curves (engine/halving.py): what the live callback decides and
what the bench replays. Late bloomers, the rung basis, the noise margin, the last run of a learning
rate, and the plan's settings for them."""

from __future__ import annotations

import pytest

from training.engine.halving import Curve, Rules, decide, noise_margin, replay
from training.plan import DEFAULT_PLAN_PATH, PlanError, load_plan

RATES = (2e-5, 5e-5)


def curve(key, f1s, planned=100, rate=2e-5, every=10):
    """Evaluations every `every` samples at these F1s, loss falling with F1."""
    return Curve(key, rate, planned, tuple((every * (i + 1), f1, 1 - f1) for i, f1 in enumerate(f1s)))


def test_a_late_bloomer_is_cut_by_an_early_rung_and_kept_by_a_rung_of_its_own_plan():
    # three 100-sample runs that start fast and plateau, then a 300-sample run (more epochs) that is
    # slow at first and ends best: at 10% of the largest run (30 samples) it is last of four
    fast = [curve(f"fast{i}", [0.6 + i / 100, 0.70 + i / 100, 0.72 + i / 100] + [0.73 + i / 100] * 7)
            for i in range(3)]
    bloomer = curve("bloomer", [0.50, 0.52, 0.55, 0.60, 0.70, 0.80, 0.85, 0.88, 0.90] + [0.91] * 21, planned=300)
    grid = replay(Rules(3, 0.1, "grid"), [*fast, bloomer], reference=300, validation_rows=300)
    assert grid[-1].pruned and grid[-1].points[-1][0] == 30  # cut at the first rung, F1 0.55
    own = replay(Rules(3, 0.1, "own"), [*fast, bloomer], reference=300, validation_rows=300)
    # at 10% of its own 300 samples it stands at 0.55 too: still cut; at 30% (90 samples) it leads
    assert own[-1].pruned
    later = replay(Rules(3, 0.3, "own"), [*fast, bloomer], reference=300, validation_rows=300)
    assert not later[-1].pruned and later[-1].points == bloomer.points


def test_a_run_within_validation_noise_of_the_leader_continues():
    peers = [curve(f"p{i}", [0.80 + i / 100] * 10) for i in range(3)]  # 0.80, 0.81, 0.82 at every rung
    own = curve("own", [0.80])
    assert decide(Rules(3, 0.1), 0, own, peers, 100, 300).pruned  # below the top third (0.82)
    spared = decide(Rules(3, 0.1, noise_z=1.0), 0, own, peers, 100, 300)
    # one standard error of 0.82 on 300 rows is 0.022: 0.80 is within it
    assert noise_margin(0.82, 300, 1.0) == pytest.approx((0.82 * 0.18 / 300) ** 0.5)
    assert not spared.pruned and "within validation noise of the leader's 0.8200" in spared.spared
    far = decide(Rules(3, 0.1, noise_z=1.0), 0, curve("own", [0.70]), peers, 100, 300)
    assert far.pruned and far.spared is None
    # on more validation rows the same gap is no longer noise
    assert decide(Rules(3, 0.1, noise_z=1.0), 0, own, peers, 100, 30_000).pruned


def test_the_last_run_of_a_learning_rate_still_in_the_race_continues():
    peers = [curve(f"p{i}", [0.80 + i / 100] * 10, rate=RATES[0]) for i in range(3)]
    cut_same_rate = Curve("cut", RATES[1], 100, ((10, 0.5, 0.5),), pruned=True)
    own = curve("own", [0.6], rate=RATES[1])
    rules = Rules(3, 0.1, keep_one_per_learning_rate=True)
    kept = decide(rules, 0, own, [*peers, cut_same_rate], 100, 300)
    assert not kept.pruned and kept.spared == "the last run of learning rate 5e-05 still in the race"
    alive_same_rate = curve("alive", [0.9] * 10, rate=RATES[1])
    assert decide(rules, 0, own, [*peers, alive_same_rate], 100, 300).pruned


def test_nothing_is_decided_with_fewer_peers_than_the_reduction_factor():
    peers = [curve(f"p{i}", [0.9] * 10) for i in range(2)]
    assert decide(Rules(3, 0.1), 0, curve("own", [0.1]), peers, 100, 300) is None
    runs = replay(Rules(3, 0.1), [curve("a", [0.9] * 10), curve("b", [0.8] * 10), curve("c", [0.1] * 10)], 100, 300)
    assert not any(c.pruned for c in runs)  # the first reduction_factor runs are never pruned


def plan_with(tmp_path, table: str):
    """The packaged plan with this pruning table on the small tier (and none elsewhere)."""
    lines = [line for line in DEFAULT_PLAN_PATH.read_text().splitlines() if not line.startswith("pruning =")]
    lines.insert(lines.index("[tiers.small]") + 1, f"pruning = {table}")
    path = tmp_path / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_plan(path)


def test_the_plan_takes_the_rules_and_names_a_bad_value(tmp_path):
    pruning = plan_with(tmp_path, '{ method = "asha", reduction_factor = 2, min_fraction = 0.3, rungs_of = "own", '
                                  'noise_z = 1.5, keep_one_per_learning_rate = true }').tiers["small"].pruning
    assert (pruning.reduction_factor, pruning.min_fraction, pruning.rungs_of, pruning.noise_z,
            pruning.keep_one_per_learning_rate) == (2, 0.3, "own", 1.5, True)
    for bad, named in (('rungs_of = "epochs"', "rungs_of"), ("noise_z = -1", "noise_z"),
                       ('keep_one_per_learning_rate = "yes"', "keep_one_per_learning_rate")):
        with pytest.raises(PlanError, match=named):
            plan_with(tmp_path, f'{{ method = "asha", {bad} }}')
