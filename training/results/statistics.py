"""How sure a test F1 is, and whether one experiment beats another on the same test rows.

- `bootstrap_f1_interval`: the 95% percentile interval of one experiment's F1.
- `paired_bootstrap`: the F1 difference of two experiments scored on the same rows, with its
  interval from resampling rows (both experiments get the same resampled rows, which is what makes
  it paired: a hard row counts against both). This decides the verdict.
- `mcnemar`: the exact McNemar test on the rows where exactly one of the two is right, reported
  beside it as a check on accuracy.

F1 semantics are those of engine/metrics.py: positive-class F1 (label index 1) for two classes,
macro F1 for more. No torch here: the report uses this too.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
PAIRED_RESAMPLES = 2000


def f1_of_rows(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """F1 of each row of a (resamples x examples) matrix; 0 where a class has no support."""
    classes = [1] if num_labels == 2 else range(num_labels)
    scores = []
    for label in classes:
        true_positive = ((predictions == label) & (labels == label)).sum(axis=1)
        predicted = (predictions == label).sum(axis=1)
        actual = (labels == label).sum(axis=1)
        denominator = predicted + actual
        scores.append(np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0))
    return np.mean(scores, axis=0)


def resample_indices(row_count: int, seed: int, resamples: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, row_count, (resamples, row_count))


def bootstrap_f1_interval(labels, predictions, num_labels: int, seed: int,
                          resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of F1 over test rows resampled with replacement."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    sample = resample_indices(len(labels), seed, resamples)
    low, high = np.percentile(f1_of_rows(labels[sample], predictions[sample], num_labels), [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    difference: float  # F1 of A minus F1 of B, on all rows
    low: float  # 95% paired-bootstrap interval of the difference
    high: float
    only_a_right: int  # McNemar's discordant rows
    only_b_right: int
    mcnemar_p: float

    @property
    def verdict(self) -> str:
        """'better' / 'worse' (A against B) when the interval of the difference excludes 0."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "not distinguishable"


def mcnemar(labels, predictions_a, predictions_b) -> tuple[int, int, float]:
    """(rows only A gets right, rows only B gets right, exact two-sided p): under the null, each
    discordant row is A's or B's with probability 1/2."""
    labels, a, b = np.asarray(labels), np.asarray(predictions_a), np.asarray(predictions_b)
    only_a = int(((a == labels) & (b != labels)).sum())
    only_b = int(((b == labels) & (a != labels)).sum())
    n = only_a + only_b
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return only_a, only_b, min(1.0, 2 * tail)


def paired_bootstrap(labels, predictions_a, predictions_b, num_labels: int, seed: int,
                     resamples: int = PAIRED_RESAMPLES) -> PairedTest:
    labels, a, b = np.asarray(labels), np.asarray(predictions_a), np.asarray(predictions_b)
    if not (len(labels) == len(a) == len(b)) or len(labels) == 0:
        raise ValueError("a paired test needs the same, non-empty rows for both experiments")
    full = f1_of_rows(labels[None], a[None], num_labels)[0] - f1_of_rows(labels[None], b[None], num_labels)[0]
    sample = resample_indices(len(labels), seed, resamples)
    differences = (f1_of_rows(labels[sample], a[sample], num_labels)
                   - f1_of_rows(labels[sample], b[sample], num_labels))
    low, high = np.percentile(differences, [2.5, 97.5])
    return PairedTest(float(full), float(low), float(high), *mcnemar(labels, a, b))
