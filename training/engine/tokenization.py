"""Tokenize once: tokenized splits are cached on disk by everything that changes them, so every
experiment of a model, and every retry, reuses the first one's work.

No padding here: the collator pads each batch to its longest member, and the length column lets
the length-grouped sampler put similar lengths together.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

LENGTH_COLUMN = "length"
STAGING_NAME = re.compile(r"^\.[0-9a-f]{20}-")
ABANDONED_AFTER_S = 24 * 3600.0


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, merges, normalisation, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(dataset_fingerprint: str, tokenizer, max_length: int, text_columns, label_values,
              sample_caps: dict) -> str:
    material = json.dumps({"data": dataset_fingerprint, "tokenizer": tokenizer_fingerprint(tokenizer),
                           "max_length": max_length, "columns": list(text_columns),
                           "labels": [str(v) for v in label_values], "caps": sample_caps}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def encode_splits(splits, tokenizer, text_columns, label_column: str, label_values: list, max_length: int):
    """Token ids, labels and lengths; a pair is truncated longest-first, so each snippet keeps at least
    half of the budget unless the other one needs less."""
    label_index = {value: index for index, value in enumerate(label_values)}

    def encode(batch):
        encoded = tokenizer(*[batch[column] for column in text_columns], truncation="longest_first",
                            max_length=max_length)
        encoded[LENGTH_COLUMN] = [len(ids) for ids in encoded["input_ids"]]
        encoded["labels"] = [label_index[value] for value in batch[label_column]]
        return encoded

    return splits.map(encode, batched=True, remove_columns=splits["train"].column_names)


def tokenized_splits(splits, tokenizer, dataset_spec, label_values: list, max_length: int,
                     dataset_fingerprint: str, sample_caps: dict, cache_root: Path, log=print):
    """Load the tokenized splits from the cache, or tokenize and store them (atomically)."""
    from datasets import load_from_disk

    key = cache_key(dataset_fingerprint, tokenizer, max_length, dataset_spec.text_columns, label_values,
                    sample_caps)
    folder = Path(cache_root) / key
    if (folder / "dataset_dict.json").is_file():
        log(f"tokenized splits reused from {folder}")
        return load_from_disk(str(folder))
    encoded = encode_splits(splits, tokenizer, dataset_spec.text_columns, dataset_spec.label_column,
                            label_values, max_length)
    store(encoded, folder)
    log(f"tokenized splits cached in {folder}")
    return load_from_disk(str(folder))


def store(encoded, folder: Path) -> None:
    """Save the tokenized splits to folder whole or not at all: a failed save (a full disk) leaves
    nothing behind, and a staging folder abandoned by a killed process is removed a day later."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    clear_abandoned_staging(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        encoded.save_to_disk(str(staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(folder)  # two experiments racing: the first rename wins, the other discards its copy
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def clear_abandoned_staging(cache_root: Path, older_than_s: float = ABANDONED_AFTER_S) -> list[Path]:
    """Remove staging folders (`.<key>-<random>`) untouched for older_than_s: what a process killed
    mid-save left. A younger one may belong to a save under way and is left alone."""
    cutoff = time.time() - older_than_s
    removed = []
    for path in Path(cache_root).iterdir():
        if not STAGING_NAME.match(path.name):
            continue
        try:
            abandoned = path.is_dir() and path.stat().st_mtime < cutoff
        except FileNotFoundError:  # another process renamed or removed it meanwhile
            continue
        if abandoned:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
