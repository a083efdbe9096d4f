"""Classification metrics from scikit-learn, in one place.

Binary tasks report F1 of the positive class (the CodeXGLUE clone evaluator's definition);
more than two classes report macro F1. `evaluate.load` is not used: it fetches metric code
from the hub at run time and fails offline.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support


def classification_metrics(labels, predictions, num_labels: int) -> dict[str, float]:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if num_labels == 2:
        kwargs = {"average": "binary", "pos_label": 1}
    else:
        kwargs = {"average": "macro", "labels": list(range(num_labels))}
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, zero_division=0, **kwargs)
    return {"f1": float(f1), "precision": float(precision), "recall": float(recall),
            "accuracy": float(accuracy_score(labels, predictions))}


def metrics_for_trainer(num_labels: int):
    """The Trainer's compute_metrics: logits and labels in, named metrics out."""
    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):  # T5 classifiers also return encoder states
            logits = logits[0]
        return classification_metrics(eval_prediction.label_ids, np.argmax(logits, axis=-1), num_labels)
    return compute
