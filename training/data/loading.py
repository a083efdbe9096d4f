"""Load a classification dataset (hub id or local folder), check it against the contract
(contract.py) before any model loads, and fingerprint it.

A local folder holds train/validation/test files (JSON Lines, Parquet or CSV, UTF-8); an
optional dataset.json beside them names the text and label columns and the positive label,
overriding the plan's.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from training.data.contract import (
    SPLITS,
    DataError,
    DataProblem,
    Labels,
    RowLocator,
    check_columns,
    check_label_sets,
    choose_labels,
    columns_of,
)
from training.plan import HUB_ID, DatasetSpec, closest

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
MANIFEST = "dataset.json"
MANIFEST_KEYS = ("text_columns", "label_column", "positive_label",
                 "description", "about")  # the last two are for people: free text, and an object of provenance


@dataclass(frozen=True)
class LoadedDataset:
    spec: DatasetSpec  # with dataset.json applied
    splits: object  # a datasets.DatasetDict with train, validation and test
    fingerprint: str  # the files (or hub fingerprints), the column mapping and the labels
    labels: Labels

    @property
    def row_counts(self) -> dict[str, int]:
        return {split: len(self.splits[split]) for split in SPLITS}


def resolve_spec(spec: DatasetSpec) -> DatasetSpec:
    """Apply a local folder's dataset.json, checked: known keys, one or two text columns."""
    path = Path(spec.source) / MANIFEST
    if not path.is_file():
        return spec
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(where, [DataProblem(where, f"not UTF-8 at byte {error.start}")]) from None
    except json.JSONDecodeError as error:
        raise DataError(where, [DataProblem(f"{where} line {error.lineno}", f"not valid JSON: {error.msg}")]) from None
    if not isinstance(data, dict):
        raise DataError(where, [DataProblem(where, "must be a JSON object", value=data)])
    problems = [DataProblem(f"{where} key {key!r}", f"unknown key; {closest(key, MANIFEST_KEYS)}", value=data[key])
                for key in data if key not in MANIFEST_KEYS]
    if not isinstance(data.get("description", ""), str) or not isinstance(data.get("about", {}), dict):
        problems.append(DataProblem(where, "description must be text and about an object"))
    columns = data.get("text_columns", list(spec.text_columns))
    if not (isinstance(columns, list) and len(columns) in (1, 2)
            and all(isinstance(c, str) and c for c in columns)) or len(set(columns)) != len(columns):
        problems.append(DataProblem(f"{where} key 'text_columns'", "must list one text column (a snippet) or two "
                                    "different ones (a pair); more are not joined, so name at most two",
                                    value=columns))
    label_column = data.get("label_column", spec.label_column)
    if not isinstance(label_column, str) or not label_column:
        problems.append(DataProblem(f"{where} key 'label_column'", "must be a column name", value=label_column))
    positive = data.get("positive_label", spec.positive_label)
    if positive is not None and type(positive) not in (bool, int, str):
        problems.append(DataProblem(f"{where} key 'positive_label'", "must be a string, an integer or a boolean",
                                    value=positive))
    if problems:
        raise DataError(where, problems)
    return dataclasses.replace(spec, text_columns=tuple(columns), label_column=label_column, positive_label=positive)


def local_split_files(folder: Path) -> dict[str, Path]:
    files, problems = {}, []
    for split in SPLITS:
        found = [folder / f"{split}{suffix}" for suffix in FORMATS if (folder / f"{split}{suffix}").is_file()]
        if not found:
            problems.append(DataProblem(str(folder), f"no {split} split (expected {split}.jsonl, .parquet or .csv)"))
        elif len(found) > 1:
            problems.append(DataProblem(str(folder), f"{len(found)} files for the {split} split ("
                                        + ", ".join(path.name for path in found)
                                        + "): which one to train on is ambiguous; keep one"))
        else:
            files[split] = found[0]
    if problems:
        raise DataError(str(folder), problems)
    if len({FORMATS[path.suffix] for path in files.values()}) != 1:
        raise DataError(str(folder), [DataProblem(str(folder), "splits in mixed formats: "
                                                  + ", ".join(path.name for path in files.values()))])
    return files


def read_text_rows(path: Path) -> tuple[list[DataProblem], list[int], list[dict] | None]:
    """Problems a library would turn into a bare traceback (an empty file, bytes that are not UTF-8,
    a line that is not a JSON object), named with the line; for JSON Lines also the line of each
    row and the rows as parsed, types untouched."""
    raw = path.read_bytes()
    if not raw.strip():
        return [DataProblem(str(path), "the file is empty")], [], None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        return [DataProblem(f"{path} line {line}", f"not UTF-8: byte {raw[error.start]:#04x} at offset "
                            f"{error.start}; save the file as UTF-8")], [], None
    if path.suffix == ".csv":
        return [], [], None
    problems, lines, records = [], [], []
    # JSON Lines ends a line at "\n" only: str.splitlines() would also split at U+2028, U+0085 and
    # other characters that are valid, unescaped, inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(DataProblem(f"{path} line {number}", f"not valid JSON: {error.msg}", value=line))
            continue
        if not isinstance(value, dict):
            problems.append(DataProblem(f"{path} line {number}", "each line must be a JSON object", value=value))
            continue
        lines.append(number)
        records.append(value)
    return problems, lines, records


def load_split(path: Path, split: str):
    """One split through the datasets library, each split on its own (so one split's schema cannot
    break another's); a library error becomes a DataError naming the file."""
    import datasets

    try:
        return datasets.load_dataset(FORMATS[path.suffix], data_files={split: str(path)}, split=split)
    except ValueError as error:
        if "corresponds to no data" not in str(error):  # datasets' words for a file without rows
            raise DataError(str(path), [DataProblem(str(path), f"could not be read: {error}")]) from None
        raise DataError(str(path), [DataProblem(str(path), "the split has no rows")]) from None
    except Exception as error:
        raise DataError(str(path), [DataProblem(str(path), f"could not be read: {type(error).__name__}: "
                                                f"{error}")]) from None


def read_local(folder: Path, needed_columns) -> tuple[dict, dict, dict, RowLocator]:
    """(tables as parsed, files, a loader of the splits, row locator) of a local folder, or a
    DataError naming each unreadable file."""
    files = local_split_files(folder)
    problems, tables = [], {}
    locate = RowLocator({split: str(path) for split, path in files.items()})
    for split, path in files.items():
        if path.suffix == ".parquet":
            continue
        found, locate.lines[split], records = read_text_rows(path)
        problems += found
        if records is not None:
            tables[split] = columns_of(records)
    if problems:
        raise DataError(str(folder), problems)
    loaded = {}
    for split, path in files.items():
        if split not in tables:  # CSV and Parquet: their own reader's types are the types trained on
            loaded[split] = load_split(path, split)
            tables[split] = columns_in(loaded[split], needed_columns)
    return tables, files, loaded, locate


def columns_in(split, needed_columns) -> dict[str, list | None]:
    """A loaded split as a table: the values of the needed columns; the others only by name."""
    return {name: list(split[name]) if name in needed_columns else None for name in split.column_names}


def load_dataset(spec: DatasetSpec) -> LoadedDataset:
    """Load and check a dataset; raise DataError listing every problem."""
    import datasets

    missing = missing_local_source(spec.source)
    if missing:
        raise DataError(spec.source, [DataProblem(spec.source, missing)])
    spec = resolve_spec(spec)
    needed = (*spec.text_columns, spec.label_column)
    folder = Path(spec.source)
    if folder.is_dir():
        tables, files, loaded, locate = read_local(folder, needed)
        content = files_fingerprint(files.values())
    else:
        try:
            loaded = datasets.load_dataset(spec.source)
        except datasets.exceptions.DatasetNotFoundError as error:  # the hub answered: no such dataset
            raise DataError(spec.source, [DataProblem(spec.source, "no local folder of that name, and the hub has "
                                                      f"no such dataset ({error})")]) from None
        missing = [split for split in SPLITS if split not in loaded]
        if missing:
            raise DataError(spec.source, [DataProblem(spec.source, f"no {split} split; it has {list(loaded)}")
                                          for split in missing])
        tables = {split: columns_in(loaded[split], needed) for split in SPLITS}
        locate = RowLocator({split: f"{spec.source} split {split}" for split in SPLITS})
        content = "".join(loaded[split]._fingerprint for split in SPLITS)
    problems = check_columns(tables, spec.text_columns, spec.label_column, locate)
    problems = problems or check_label_sets(tables, spec.label_column, locate)
    if problems:
        raise DataError(spec.source, problems)
    labels = choose_labels(set(tables["train"][spec.label_column]), spec.positive_label,
                           str(folder / MANIFEST) if folder.is_dir() else spec.source)
    splits = datasets.DatasetDict({split: loaded[split] if split in loaded else load_split(files[split], split)
                                   for split in SPLITS})
    return LoadedDataset(spec, splits, fingerprint(content, spec, labels), labels)


def missing_local_source(source: str) -> str | None:
    """Why a source meant as a local folder cannot be one (it does not exist, is a file, or is a
    symbolic link that loops or points nowhere), or None: a folder, or a hub id to fetch."""
    path = Path(source).expanduser()
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python's word for a symbolic link loop
        return "a symbolic link that loops: it names no folder"
    except OSError as error:
        if os.path.islink(path) or error.errno == errno.ELOOP:
            return "a symbolic link that loops or points nowhere: it names no folder"
        if source.startswith(("/", "./", "../", "~")) or not HUB_ID.fullmatch(source):
            return "no such folder on this machine (and not a hub id, which looks like org/name)"
        return None  # a hub id
    return None if path.is_dir() else "a file, not a folder: a local dataset is a folder of train/validation/test files"


def fingerprint(content: str, spec: DatasetSpec, labels: Labels) -> str:
    """What changes results: the data, which columns are read, and what the labels mean."""
    material = json.dumps({"content": content, "text_columns": list(spec.text_columns),
                           "label_column": spec.label_column, "labels": [repr(v) for v in labels.values],
                           "positive": repr(labels.positive)}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def files_fingerprint(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def capped_rows(row_count: int, max_samples: int | None, seed: int) -> list[int]:
    """The rows a cap keeps (smoke runs and the demo): a seeded sample of at most max_samples, in
    the file's order, so predictions line up with the rows and an interval can be recomputed."""
    if max_samples is None or row_count <= max_samples:
        return list(range(row_count))
    import numpy as np

    return sorted(np.random.default_rng(seed).permutation(row_count)[:max_samples].tolist())
