"""Load a classification dataset (hub id or local folder), validate it, and fingerprint it.

A local folder holds train/validation/test files (JSON Lines, Parquet or CSV); an optional
dataset.json beside them names the text and label columns, overriding the plan's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from training.plan import DatasetSpec

SPLITS = ("train", "validation", "test")
FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
MANIFEST = "dataset.json"


class DataError(ValueError):
    """A dataset that cannot be trained on; the message says which split, column or file."""


def resolve_spec(spec: DatasetSpec) -> DatasetSpec:
    """Apply a local folder's dataset.json column mapping, if it has one."""
    manifest = Path(spec.source) / MANIFEST
    if not manifest.is_file():
        return spec
    data = json.loads(manifest.read_text())
    return dataclasses.replace(spec, text_columns=tuple(data.get("text_columns", spec.text_columns)),
                               label_column=data.get("label_column", spec.label_column))


def local_split_files(folder: Path) -> dict[str, Path]:
    files = {}
    for split in SPLITS:
        found = [folder / f"{split}{suffix}" for suffix in FORMATS if (folder / f"{split}{suffix}").is_file()]
        if not found:
            raise DataError(f"{folder}: no {split} split (expected {split}.jsonl, .parquet or .csv)")
        files[split] = found[0]
    return files


def load_splits(spec: DatasetSpec):
    """Return (DatasetDict with train/validation/test, fingerprint)."""
    import datasets

    folder = Path(spec.source)
    if folder.is_dir():
        files = local_split_files(folder)
        builders = {FORMATS[path.suffix] for path in files.values()}
        if len(builders) != 1:
            raise DataError(f"{folder}: splits in mixed formats {sorted(builders)}")
        splits = datasets.load_dataset(builders.pop(), data_files={k: str(v) for k, v in files.items()})
        fingerprint = files_fingerprint(files.values())
    else:
        splits = datasets.load_dataset(spec.source)
        missing = [split for split in SPLITS if split not in splits]
        if missing:
            raise DataError(f"{spec.source}: missing splits {missing}")
        fingerprint = hashlib.sha256("".join(splits[s]._fingerprint for s in SPLITS).encode()).hexdigest()[:16]
    validate(splits, spec)
    return splits, fingerprint


def validate(splits, spec: DatasetSpec) -> None:
    for split in SPLITS:
        columns = splits[split].column_names
        for column in (*spec.text_columns, spec.label_column):
            if column not in columns:
                raise DataError(f"{spec.source} [{split}]: no column {column!r}; columns are {columns}")
        if len(splits[split]) == 0:
            raise DataError(f"{spec.source} [{split}]: split is empty")
    labels = set(splits["train"].unique(spec.label_column))
    if len(labels) < 2:
        raise DataError(f"{spec.source} [train]: needs at least two labels, found {sorted(labels)}")


def files_fingerprint(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def label_names(splits, spec: DatasetSpec) -> list:
    """Sorted label values; label i of the model is the i-th of these (False < True, 0 < 1)."""
    return sorted(set(splits["train"].unique(spec.label_column)))


def cap(split, max_samples: int | None, seed: int):
    """Take a seeded sample of at most max_samples rows (smoke runs and the demo)."""
    if max_samples is None or len(split) <= max_samples:
        return split
    return split.shuffle(seed=seed).select(range(max_samples))
