"""Metric semantics, checked against values computed by hand."""

from __future__ import annotations

import pytest

from training.metrics import classification_metrics


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
