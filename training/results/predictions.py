"""Per-row predictions of a best checkpoint on the test and on the validation split, kept beside it
as small Parquet files: what the F1 intervals are computed from, and what paired comparisons
between experiments read (on test, the verdicts; on validation, whether the choice was a tie).

Rows are in the split file's order (`row_id` is the row's position in it), so two experiments
scored on the same data line up row by row, and the interval can be recomputed from the file
alone: the file's metadata carries the class count and the bootstrap seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE_NAME = "test_predictions.parquet"
VALIDATION_FILE_NAME = "validation_predictions.parquet"


@dataclass(frozen=True)
class Predictions:
    row_ids: np.ndarray
    label_index: np.ndarray  # the model's label index (1 is the positive class of a binary task)
    predicted_index: np.ndarray
    class_count: int
    seed: int

    def same_rows(self, other: Predictions) -> bool:
        return np.array_equal(self.row_ids, other.row_ids) and np.array_equal(self.label_index, other.label_index)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def write_predictions(folder: Path, row_ids, label_index, logits, label_values: list, seed: int,
                      name: str = FILE_NAME) -> Path:
    """Write the file (atomically) and return its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    label_index = np.asarray(label_index, dtype=np.int64)
    predicted = np.asarray(logits).argmax(-1)
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    binary = len(label_values) == 2
    table = pa.table({
        "row_id": pa.array(np.asarray(row_ids, dtype=np.int64)),
        "label": pa.array([label_values[i] for i in label_index]),
        "predicted_label": pa.array([label_values[i] for i in predicted]),
        "label_index": pa.array(label_index.astype(np.int16)),
        "predicted_index": pa.array(predicted.astype(np.int16)),
        # binary: the probability of the positive class; more classes: of the predicted class
        "positive_probability" if binary else "predicted_probability": pa.array(
            (probabilities[:, 1] if binary else probabilities.max(axis=-1)).astype(np.float32)),
    })
    table = table.replace_schema_metadata({"sweep": json.dumps({
        "class_count": len(label_values), "seed": seed, "label_values": [str(v) for v in label_values],
        "positive_label": str(label_values[1]) if binary else None})})
    path = Path(folder) / name
    staging = path.with_suffix(".tmp")
    pq.write_table(table, staging, compression="zstd")
    staging.replace(path)
    return path


def read_predictions(path: Path | str) -> Predictions:
    import pyarrow.parquet as pq

    from training.artifacts import open_artifact

    with open_artifact(str(path)) as handle:  # a local path, or a URL in the artifact store
        table = pq.read_table(handle, columns=["row_id", "label_index", "predicted_index"])
    meta = json.loads(table.schema.metadata[b"sweep"])
    return Predictions(table["row_id"].to_numpy(), table["label_index"].to_numpy().astype(np.int64),
                       table["predicted_index"].to_numpy().astype(np.int64), meta["class_count"], meta["seed"])


def recomputed_interval(path: Path | str) -> tuple[float, float]:
    """The 95% bootstrap interval of F1 (test_f1_ci_* from a test file, validation_f1_ci_* from a
    validation file), from the file alone."""
    from training.results.statistics import bootstrap_f1_interval

    rows = read_predictions(path)
    return bootstrap_f1_interval(rows.label_index, rows.predicted_index, rows.class_count, rows.seed)


def paired_files(path_a: str, path_b: str, split: str):
    """(the paired test of two experiments' predictions files, the rows it is on, why there is none):
    the files read back, checked to hold the same rows of `split`, then statistics.paired_bootstrap."""
    from training.results.statistics import paired_bootstrap

    try:
        a, b = read_predictions(path_a), read_predictions(path_b)
    except (OSError, KeyError, ValueError) as error:
        return None, 0, f"a {'' if split == 'test' else split + ' '}predictions file could not be read " \
                        f"({type(error).__name__}: {error})"
    if not a.same_rows(b):
        return None, 0, f"they were not scored on the same {split} rows"
    return paired_bootstrap(a.label_index, a.predicted_index, b.predicted_index, a.class_count, a.seed), \
        len(a.row_ids), None
