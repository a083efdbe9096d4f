"""Metric semantics, checked against values computed by hand."""

from __future__ import annotations

import pytest

from training.engine.metrics import classification_metrics


def test_binary_f1_is_of_the_positive_class():
    # TP=2 (idx 0, 3), FP=1 (idx 4), FN=1 (idx 2), TN=1 (idx 1)
    metrics = classification_metrics([1, 0, 1, 1, 0], [1, 0, 0, 1, 1], num_labels=2)
    assert metrics == pytest.approx({"f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3, "accuracy": 3 / 5})


def test_all_negative_predictions_give_zero_f1_not_an_error():
    metrics = classification_metrics([1, 0, 1, 0], [0, 0, 0, 0], num_labels=2)
    assert metrics == pytest.approx({"f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 0.5})


def test_split_with_no_positive_labels():
    metrics = classification_metrics([0, 0, 0], [0, 1, 0], num_labels=2)
    assert metrics == pytest.approx({"f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 2 / 3})


def test_more_than_two_classes_use_macro_f1():
    # class 0: P=1, R=1/2, F1=2/3; class 1: P=1/2, R=1, F1=2/3; class 2: P=R=F1=1
    metrics = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], num_labels=3)
    assert metrics["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["accuracy"] == pytest.approx(3 / 4)


def test_bootstrap_interval_brackets_the_f1_and_is_reproducible():
    from training.results.statistics import bootstrap_f1_interval

    labels = [1, 0] * 50
    perfect = bootstrap_f1_interval(labels, labels, 2, seed=1, resamples=200)
    assert perfect == (1.0, 1.0)
    noisy = [label if i % 5 else 1 - label for i, label in enumerate(labels)]  # 80% right
    low, high = bootstrap_f1_interval(labels, noisy, 2, seed=1, resamples=200)
    assert low < classification_metrics(labels, noisy, 2)["f1"] < high
    assert 0.6 < low and high < 0.95
    assert (low, high) == bootstrap_f1_interval(labels, noisy, 2, seed=1, resamples=200)


def test_vectorised_bootstrap_f1_matches_scikit_learn_on_every_resample():
    import numpy as np

    from training.results.statistics import f1_of_rows

    rng = np.random.default_rng(0)
    for num_labels in (2, 3):
        labels, predictions = rng.integers(0, num_labels, (50, 40)), rng.integers(0, num_labels, (50, 40))
        labels[0] = 0  # a resample with no positive label
        ours = f1_of_rows(labels, predictions, num_labels)
        expected = [classification_metrics(truth, p, num_labels)["f1"] for truth, p in zip(labels, predictions)]
        assert ours == pytest.approx(expected)
