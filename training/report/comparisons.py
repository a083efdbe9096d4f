"""The report's verdicts: whether the chosen model beats the runner-up (and, within each model,
whether the chosen configuration beats the next one), from a paired test on the same test rows
read back from the experiments' prediction files; training-seed spread where the plan asked for
seed confirmation; and the leakage warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.report.noise import ValidationCheck, validation_check
from training.results.predictions import paired_files, read_predictions
from training.results.record import StoredExperiment
from training.results.statistics import PairedTest, paired_bootstrap

SEED_SPREAD_FACTOR = 2.0  # a seed-mean difference counts when it exceeds twice its standard error


@dataclass(frozen=True)
class SeedSummary:
    """The chosen configuration over its grid run and its reruns with other seeds."""

    seeds: list[int]
    mean_validation_f1: float
    sd_validation_f1: float
    mean_test_f1: float
    sd_test_f1: float
    gpu_hours: float  # what the reruns cost
    varied: str | None = None  # what the seeds varied, and what they kept (the rows), when recorded


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    test: PairedTest | None
    verdict: str  # on F1: "higher F1", "F1 not distinguishable", "lower F1 on test" (test contradicts the choice),
    # or "not compared"
    sentence: str
    validation: ValidationCheck | None = None  # whether validation, where the choice was made, told them apart


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def seed_summary(best: StoredExperiment | None, confirmations: list[StoredExperiment]) -> SeedSummary | None:
    if best is None:
        return None
    runs = [best, *[c for c in confirmations if c.confirmation_of == best.experiment_key and c.succeeded]]
    if len(runs) < 2 or any(r.test_f1 is None for r in runs):
        return None
    validation, test = [r.validation_f1 for r in runs], [r.test_f1 for r in runs]
    return SeedSummary(sorted(r.seed for r in runs if r.seed is not None), sum(validation) / len(runs),
                       _sd(validation), sum(test) / len(runs), _sd(test),
                       sum(c.gpu_hours for c in confirmations), seeds_varied(best))


def seeds_varied(best: StoredExperiment) -> str | None:
    """Which seed varied what: the training seed, initialisation and batch order; the rows are the
    plan's data seed's sample (capped budgets) or all of them. None for rows from before run
    settings were recorded."""
    settings = best.run_settings
    if settings is None:
        return None
    rows = (f"the same rows for every seed, sampled with the plan's data seed {settings['data_seed']}"
            if "data_seed" in settings else "every row of each split for every seed")
    return f"each seed varied initialisation and the order of training batches only, on {rows}"


def paired(first: StoredExperiment, second: StoredExperiment) -> tuple[PairedTest | None, str | None]:
    """The paired test of two experiments' test predictions, or why there is none."""
    if not (first.predictions_path and second.predictions_path):
        return None, "no predictions file was recorded for one of them"
    test, _, why_not = paired_files(first.predictions_path, second.predictions_path, "test")
    return test, why_not


def seeds_agree(first: SeedSummary | None, second: SeedSummary | None) -> bool | None:
    """Whether the seed means of test F1 differ by more than SEED_SPREAD_FACTOR standard errors;
    None without seed confirmation on both sides."""
    if first is None or second is None:
        return None
    error = math.sqrt(first.sd_test_f1 ** 2 / len(first.seeds) + second.sd_test_f1 ** 2 / len(second.seeds))
    return first.mean_test_f1 - second.mean_test_f1 > SEED_SPREAD_FACTOR * error


def compare(first_name: str, first: StoredExperiment, second_name: str, second: StoredExperiment,
            first_seeds: SeedSummary | None = None, second_seeds: SeedSummary | None = None) -> Comparison:
    """First is the one validation F1 chose; the verdict says whether test rows back that choice, and
    the validation check whether the choice itself was beyond validation noise."""
    on_validation = validation_check(first_name, first, second_name, second)
    test, why_not = paired(first, second)
    if test is None:
        return Comparison(first_name, second_name, None, "not compared",
                          f"{first_name} against {second_name}: not compared, {why_not}.", on_validation)
    # Two statistics, each named for what it measures: the F1 difference (its paired-bootstrap
    # interval decides the verdict) and the rows each alone gets right (McNemar), which counts
    # every row alike where F1 weighs the positive class; the verdict's words follow the first.
    figures = (f"F1 difference {test.difference:+.3f}, 95% paired-bootstrap interval {test.low:+.3f} to "
               f"{test.high:+.3f}; rows right: {test.only_a_right} only by {first_name}, {test.only_b_right} only by "
               f"{second_name}, McNemar p = {test.mcnemar_p:.3g}")
    verdict = {"better": "higher F1", "worse": "lower F1 on test"}.get(test.verdict, "F1 not distinguishable")
    agree = seeds_agree(first_seeds, second_seeds)
    seeds = ""
    if agree is not None:
        seeds = (f"; over {len(first_seeds.seeds)} and {len(second_seeds.seeds)} training seeds, mean test F1 "
                 f"{first_seeds.mean_test_f1:.3f} ± {first_seeds.sd_test_f1:.3f} against "
                 f"{second_seeds.mean_test_f1:.3f} ± {second_seeds.sd_test_f1:.3f}")
        if verdict == "higher F1" and not agree:  # one seed's luck is not a better model
            verdict = "F1 not distinguishable"
            seeds += ", a gap within the seeds' spread"
    if verdict == "higher F1":
        sentence = f"{first_name} has a higher F1 than {second_name} on the same test rows ({figures}{seeds})."
    elif verdict == "lower F1 on test":  # the choice stays on validation; the reader must know test disagrees
        sentence = (f"{second_name} has a higher F1 than {first_name} on the same test rows ({figures}{seeds}): "
                    "validation chose otherwise, so the choice is not confirmed by test.")
    else:
        sentence = (f"The F1 of {first_name} and of {second_name} is not distinguishable on the same test rows "
                    f"({figures}{seeds}).")
    direction = (test.difference > 0) - (test.difference < 0)
    rows_direction = (test.only_a_right > test.only_b_right) - (test.only_a_right < test.only_b_right)
    if direction and rows_direction == -direction:
        ahead = second_name if rows_direction < 0 else first_name
        sentence += (f" The two statistics point different ways: {ahead} gets more rows right, while the other's "
                     "F1 is higher; F1 counts the positive class's hits and errors only, rows right count every "
                     "row alike. The verdict is on F1.")
    return Comparison(first_name, second_name, test, verdict, sentence, on_validation)


def leakage_notes(rows: list[StoredExperiment]) -> list[str]:
    """One warning per split whose held-out rows repeat training data (the same for every experiment
    on the same data and caps, so the largest count is shown), counted against the training rows the
    run kept: `check-data` counts against all of the dataset's, so its figures can be higher."""
    notes = []
    train = max((r.train_rows or 0 for r in rows), default=0)
    for split in ("validation", "test"):
        total = max((getattr(r, f"{split}_rows") or 0 for r in rows), default=0)
        duplicates = max((getattr(r, f"{split}_duplicates_of_train") or 0 for r in rows), default=0)
        sharing = max((getattr(r, f"{split}_rows_sharing_train_text") or 0 for r in rows), default=0)
        every = max((getattr(r, f"{split}_rows_all_texts_in_train") or 0 for r in rows), default=0)
        if not total or not (duplicates or sharing):
            continue
        text = f"{duplicates} of {total} {split} rows ({duplicates / total:.1%}) are exact duplicates of a training row"
        if every > duplicates:
            text += (f", {every} ({every / total:.1%}) have every text in training, if not as this pair "
                     "(near-copies)")
        if sharing > max(duplicates, every):
            text += (f", and {sharing} ({sharing / total:.1%}) share at least one text with a training row "
                     "(the same function under another pair)")
        against = f"counted against the {train} training rows this run kept" if train else "counted"
        notes.append(text + f" ({against}; `check-data` counts against all of the dataset's): {split} F1 is "
                     "optimistic for code the model has never seen.")
    return notes


def one_class_notes(chosen: dict[str, StoredExperiment]) -> tuple[list[str], float | None]:
    """(a warning per chosen model whose test F1 is no better than always predicting the positive
    class, by the paired test on the same rows; the F1 of that constant prediction). Without them an
    F1 of 0.667 on balanced data reads as learning."""
    import numpy as np

    notes, baseline = [], None
    for model_id, best in chosen.items():
        try:
            rows = read_predictions(best.predictions_path) if best and best.predictions_path else None
        except (OSError, KeyError, ValueError):
            rows = None
        if rows is None or rows.class_count != 2 or not len(rows.row_ids):
            continue
        positive_rate = float(np.mean(rows.label_index == 1))
        baseline = 2 * positive_rate / (1 + positive_rate)
        always = np.ones_like(rows.label_index)
        test = paired_bootstrap(rows.label_index, rows.predicted_index, always, 2, rows.seed)
        if test.verdict != "better":
            share = float(np.mean(rows.predicted_index == 1))
            notes.append(f"{model_id}: the chosen configuration is no better than always predicting the positive "
                         f"class (F1 {baseline:.3f} on these rows; difference {test.difference:+.3f}, 95% paired "
                         f"interval {test.low:+.3f} to {test.high:+.3f}); it predicts the positive class for "
                         f"{share:.0%} of test rows, so it has learned little.")
    return notes, baseline
