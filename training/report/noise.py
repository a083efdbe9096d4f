"""Noise where the choice is made. Validation F1 chooses the checkpoint, the configuration and the
model; on a few hundred validation rows, cells 0.01-0.03 apart can be picked by noise. From the
two experiments' per-row validation predictions (validation_predictions.parquet), the same paired
bootstrap as the test verdict says whether the chosen one is ahead beyond noise or the choice is a
tie, and what would break a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.results.predictions import paired_files
from training.results.record import StoredExperiment
from training.results.statistics import PairedTest


@dataclass(frozen=True)
class ValidationCheck:
    test: PairedTest | None
    rows: int
    tie: bool | None  # None when there was nothing to test
    sentence: str


def signed(value: float) -> str:
    """Three decimals, unless that would show a bound just off zero as +0.000."""
    return f"{value:+.3f}" if value == 0 or abs(value) >= 0.0005 else f"{value:+.1e}"


def rows_to_separate(rows: int, test: PairedTest) -> int | None:
    """About how many validation rows would bring the difference's interval clear of zero, if the
    difference held: the interval's half-width narrows with the square root of the rows. None when
    the difference is zero (no number of rows separates equal scores)."""
    half_width = (test.high - test.low) / 2
    if test.difference == 0 or half_width <= 0:
        return None
    needed = rows * (half_width / abs(test.difference)) ** 2
    magnitude = 10 ** max(int(math.log10(needed)) - 1, 0)  # two significant figures, rounded up
    return int(math.ceil(needed / magnitude) * magnitude)


def validation_check(first_name: str, first: StoredExperiment, second_name: str,
                     second: StoredExperiment) -> ValidationCheck:
    """First is the one validation F1 chose over second."""
    if not (first.validation_predictions_path and second.validation_predictions_path):
        return ValidationCheck(None, 0, None, "Validation noise is not measured for this choice: no validation "
                                              "predictions were recorded for one of them (a row from before they "
                                              "were kept).")
    test, rows, why_not = paired_files(first.validation_predictions_path, second.validation_predictions_path,
                                       "validation")
    if test is None:
        return ValidationCheck(None, 0, None, f"Validation noise is not measured for this choice: {why_not}.")
    figures = (f"F1 difference {signed(test.difference)}, 95% paired-bootstrap interval {signed(test.low)} to "
               f"{signed(test.high)}")
    where = f"On the {rows:,} validation rows where the choice was made"
    if test.verdict == "better":
        return ValidationCheck(test, rows, False, f"{where}, {first_name} is ahead of {second_name} beyond noise "
                                                  f"({figures}).")
    needed = rows_to_separate(rows, test)
    more_rows = (f"about {needed:,} validation rows would, if the difference held (the interval narrows with the "
                 "square root of the rows)" if needed else "more validation rows might, if the two differ at all")
    return ValidationCheck(test, rows, True, (
        f"{where}, {first_name} and {second_name} are a tie ({figures}, which includes no difference): validation "
        f"noise could have chosen either. To break the tie, {more_rows}; so would training both with more seeds "
        "and comparing their means (the plan's `confirm_seeds` reruns only the chosen one)."))
