"""The paired test between two experiments on the same test rows, against hand-computed cases, and
the leakage counts on a fixture with planted duplicates."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from training.results.statistics import mcnemar, paired_bootstrap, resample_indices


def test_mcnemar_matches_the_hand_computed_exact_binomial():
    # 20 rows: both right on 6, both wrong on 4, only A right on 8, only B right on 2.
    labels = np.array([1] * 20)
    a = np.array([1] * 6 + [0] * 4 + [1] * 8 + [0] * 2)
    b = np.array([1] * 6 + [0] * 4 + [0] * 8 + [1] * 2)
    # n = 10 discordant rows; P(X <= 2) = (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 56 / 1024; two-sided x2
    assert mcnemar(labels, a, b) == (8, 2, 112 / 1024)
    assert mcnemar(labels, b, a) == (2, 8, 112 / 1024)
    assert mcnemar(labels, a, a) == (0, 0, 1.0)  # no disagreement: nothing to test
    # 5 against 5: P(X <= 5) = 638 / 1024 > 1/2, so the two-sided p is capped at 1
    assert mcnemar(labels, np.r_[a[:10], [1] * 5, [0] * 5], np.r_[b[:10], [0] * 5, [1] * 5])[2] == 1.0


def test_paired_bootstrap_is_the_difference_of_f1_on_the_same_resampled_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    a = np.where(rng.random(60) < 0.8, labels, 1 - labels)
    b = np.where(rng.random(60) < 0.7, labels, 1 - labels)
    test = paired_bootstrap(labels, a, b, 2, seed=7, resamples=300)
    assert test.difference == pytest.approx(f1_score(labels, a) - f1_score(labels, b))
    # the same interval by hand: each resample's rows scored for both, with scikit-learn
    by_hand = [f1_score(labels[rows], a[rows], zero_division=0) - f1_score(labels[rows], b[rows], zero_division=0)
               for rows in resample_indices(60, 7, 300)]
    assert (test.low, test.high) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])))
    assert test.low <= test.difference <= test.high


def test_the_verdict_comes_from_the_interval_of_the_difference():
    labels = np.array([1, 0] * 100)
    perfect, noisy = labels.copy(), labels.copy()
    noisy[:60:3] = 1 - noisy[:60:3]  # 20 of 200 rows wrong
    assert paired_bootstrap(labels, perfect, noisy, 2, seed=1).verdict == "better"
    assert paired_bootstrap(labels, noisy, perfect, 2, seed=1).verdict == "worse"
    same = paired_bootstrap(labels, noisy, noisy, 2, seed=1)
    assert (same.difference, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "not distinguishable")
    one_row = noisy.copy()
    one_row[1] = 1 - one_row[1]  # differs from noisy on one row only
    assert paired_bootstrap(labels, noisy, one_row, 2, seed=1).verdict == "not distinguishable"
    with pytest.raises(ValueError, match="same, non-empty rows"):
        paired_bootstrap(labels, noisy, noisy[:-1], 2, seed=1)


def test_leakage_counts_find_planted_duplicates():
    from datasets import Dataset, DatasetDict

    from training.data.contract import leakage_counts

    def split(pairs):
        return Dataset.from_dict({"func1": [p[0] for p in pairs], "func2": [p[1] for p in pairs],
                                  "label": [0] * len(pairs)})

    train = split([("def a(): return 1", "def b(): return 2"), ("def c(): pass", "def d(): pass")])
    validation = split([
        ("def a():\n    return 1", "def b():   return 2"),  # the first train pair, whitespace changed
        ("def x(): pass", "def y(): pass"),  # new
    ])
    test = split([
        ("def d(): pass", "def c(): pass"),  # the second train pair, in the other order
        ("def a(): return 1", "def z(): pass"),  # shares one function with train
        ("def q(): pass", "def r(): pass"),  # new
        ("def b(): return 2", "def c(): pass"),  # both functions in train, never as a pair: a near-copy
    ])
    counts = leakage_counts(DatasetDict(train=train, validation=validation, test=test), ("func1", "func2"))
    assert counts == {"validation_duplicates_of_train": 1, "validation_rows_sharing_train_text": 1,
                      "validation_rows_all_texts_in_train": 1,
                      "test_duplicates_of_train": 1, "test_rows_sharing_train_text": 3,
                      "test_rows_all_texts_in_train": 2}
    single = leakage_counts(DatasetDict(train=train, validation=validation, test=test), ("func1",))
    assert single == {"validation_duplicates_of_train": 1, "validation_rows_sharing_train_text": 1,
                      "validation_rows_all_texts_in_train": 1,
                      "test_duplicates_of_train": 1, "test_rows_sharing_train_text": 1,
                      "test_rows_all_texts_in_train": 1}
