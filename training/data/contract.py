"""What a dataset must be before any model loads: three splits, one or two text columns of
non-empty strings, a label column of one type, at least two classes in every split,
no label in validation or test that train lacks, and an explicit positive class for binary F1.

Every violation is a DataProblem naming the file or split, the row (and line), the column and
the value; a DataError carries all of them at once, so a user fixes a file in one pass.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "validation", "test")
MAX_PROBLEMS_SHOWN = 20
LABEL_TYPES = {bool: "boolean", int: "integer", str: "string"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class DataProblem:
    where: str  # "…/train.jsonl line 12", "split validation row 3", "…/dataset.json"
    problem: str
    column: str | None = None
    value: Any = None

    def __str__(self) -> str:
        column = f", column {self.column!r}" if self.column else ""
        value = "" if self.value is None else f": {_shown(self.value)}"
        return f"{self.where}{column}: {self.problem}{value}"


class DataError(ValueError):
    """A dataset that cannot be trained on; the message lists every problem found (up to a limit)."""

    def __init__(self, source: str, problems: list[DataProblem]):
        self.source, self.problems = source, problems
        shown = "".join(f"\n  - {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        super().__init__(f"dataset {source}: {len(problems)} problem(s){shown}"
                         + (f"\n  ... and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class Labels:
    """The model's label order (label i of the classifier is values[i]) and which one F1 is of."""

    values: list
    positive: Any  # None for more than two classes: F1 is then macro-averaged


@dataclass
class RowLocator:
    """Row i of a split as a person finds it: the file and its line where known."""

    where: dict[str, str]
    lines: dict[str, list[int]] = field(default_factory=dict)

    def __call__(self, split: str, row: int) -> str:
        lines = self.lines.get(split)
        line = f" line {lines[row]}" if lines and row < len(lines) else ""
        return f"{self.where[split]} row {row + 1}{line}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def columns_of(records: list[dict]) -> dict[str, list]:
    """Rows as columns; a key some rows lack is None there."""
    names = list(dict.fromkeys(key for record in records for key in record))
    return {name: [record.get(name) for record in records] for name in names}


def check_columns(tables: dict[str, dict[str, list]], text_columns, label_column: str,
                  locate: RowLocator) -> list[DataProblem]:
    """Presence of each split and column, and the values of every row. A table is a split's
    columns as Python values, exactly as parsed, before any library coerces their types."""
    problems = []
    for split in SPLITS:
        data = tables[split]  # a column not needed may be there by name only (None)
        if not data or max((len(values) for values in data.values() if values is not None), default=1) == 0:
            problems.append(DataProblem(locate.where[split], "the split has no rows"))
            continue
        missing = [c for c in (*text_columns, label_column) if c not in data]
        for column in missing:
            key = "label_column" if column == label_column else "text_columns"
            problems.append(DataProblem(locate.where[split], f"no such column; the columns are {list(data)} "
                                        f"(name yours with {key} in dataset.json)", column))
        if missing:
            continue
        for column in text_columns:
            for row, text in enumerate(data[column]):
                if text is None:
                    problems.append(DataProblem(locate(split, row), "text is null", column))
                elif not isinstance(text, str):
                    problems.append(DataProblem(locate(split, row), "text is not a string", column, text))
                elif not text.strip():
                    problems.append(DataProblem(locate(split, row), "text is empty", column, text))
        problems += check_label_values(data[label_column], split, label_column, locate)
    return problems


def check_label_values(values: list, split: str, label_column: str, locate: RowLocator) -> list[DataProblem]:
    problems, first_of_type = [], {}
    for row, value in enumerate(values):
        if value is None:
            problems.append(DataProblem(locate(split, row), "label is null", label_column))
        elif type(value) not in LABEL_TYPES:
            problems.append(DataProblem(locate(split, row), "a label must be an integer, a boolean or a string",
                                        label_column, value))
        elif type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            problems.append(DataProblem(locate(split, row), "an integer label must fit in 64 bits (the tables the "
                                        "data is read into hold no more); use a string label", label_column, value))
        else:
            first_of_type.setdefault(type(value), row)
    if len(first_of_type) > 1:
        kinds = ", ".join(f"{LABEL_TYPES[kind]} ({locate(split, row)}: {values[row]!r})"
                          for kind, row in first_of_type.items())
        problems.append(DataProblem(f"split {split}", f"labels of mixed types: {kinds}", label_column))
    return problems


def check_label_sets(tables: dict[str, dict[str, list]], label_column: str, locate: RowLocator) -> list[DataProblem]:
    """Every label is learnable (train has it), and F1 can select and report (two classes in
    train and in validation)."""
    labels = {split: set(tables[split][label_column]) for split in SPLITS}
    problems = []
    kinds = {type(value) for values in labels.values() for value in values}
    if len(kinds) > 1:
        problems.append(DataProblem("all splits", "the splits use labels of different types: "
                                    + ", ".join(f"{s} {sorted(map(repr, labels[s]))}" for s in SPLITS), label_column))
        return problems
    for split in ("validation", "test"):
        for value in sorted(labels[split] - labels["train"], key=repr):
            row = tables[split][label_column].index(value)
            problems.append(DataProblem(locate(split, row), "a label that train does not have: the model cannot "
                                        f"learn it (train has {sorted(labels['train'], key=repr)})",
                                        label_column, value))
    reasons = {"train": "a model cannot learn to tell classes apart",
               "validation": "F1 is the same for every checkpoint, so the best one cannot be chosen",
               "test": "F1 on one class says nothing about telling classes apart, and its interval is a point"}
    for split, reason in reasons.items():
        if len(labels[split]) < 2:
            problems.append(DataProblem(f"split {split}", f"only one class {sorted(labels[split], key=repr)}: "
                                        f"{reason}", label_column))
    return problems


def choose_labels(train_labels: set, positive_label: Any, where: str) -> Labels:
    """The label order and the positive class: named in dataset.json, else 1 of {0, 1} or true of
    {false, true}; any other binary set must name it."""
    ordered = sorted(train_labels, key=lambda value: (str(type(value)), value))
    if len(ordered) > 2:
        if positive_label is not None:
            raise DataError(where, [DataProblem(f"{where} key 'positive_label'", f"only for two classes; these "
                                                f"{len(ordered)} classes are scored by macro F1",
                                                value=positive_label)])
        return Labels(ordered, None)
    if positive_label is None:
        if set(ordered) == {0, 1} and all(type(v) is int for v in ordered):
            positive_label = 1
        elif set(ordered) == {False, True} and all(type(v) is bool for v in ordered):
            positive_label = True
        else:
            raise DataError(where, [DataProblem(where, f"the labels are {ordered}: say which one F1 is "
                                                "measured for, with \"positive_label\" in dataset.json")])
    matches = [value for value in ordered if value == positive_label and type(value) is type(positive_label)]
    if not matches:
        raise DataError(where, [DataProblem(f"{where} key 'positive_label'", f"not one of the labels {ordered}",
                                            value=positive_label)])
    negative = next(value for value in ordered if value is not matches[0] and value != matches[0])
    return Labels([negative, matches[0]], matches[0])


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def text_digest(text: str) -> str:
    return hashlib.sha1(normalised(text).encode()).hexdigest()


def leakage_counts(splits, text_columns) -> dict[str, int]:
    """Held-out rows that leak training data, per split: exact duplicates of a training row (texts
    whitespace-normalised; a pair in either order, since a clone pair is symmetric), and rows that
    share at least one text with a training row (the same function under another pair, as in
    BigCloneBench, where one function appears in many pairs), and rows whose every text is in
    training (both functions seen, in other pairs). With one text column the three agree."""
    def row_texts(split):
        return list(zip(*[[text_digest(t) for t in split[column]] for column in text_columns]))

    train = row_texts(splits["train"])
    train_rows = {tuple(sorted(texts)) for texts in train}
    train_texts = {digest for texts in train for digest in texts}
    counts = {}
    for split in ("validation", "test"):
        rows = row_texts(splits[split])
        counts[f"{split}_duplicates_of_train"] = sum(tuple(sorted(texts)) in train_rows for texts in rows)
        counts[f"{split}_rows_sharing_train_text"] = sum(any(d in train_texts for d in texts) for texts in rows)
        # Every text seen in training, if not as this pair: near-copies of training data.
        counts[f"{split}_rows_all_texts_in_train"] = sum(all(d in train_texts for d in texts) for texts in rows)
    return counts
