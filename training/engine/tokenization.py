"""Tokenize once: tokenized splits are cached on disk by everything that changes them, so every
experiment of a model, and every retry, reuses the first one's work.

No padding here: the collator pads each batch to its longest member, and the length column lets
the length-grouped sampler put similar lengths together.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

LENGTH_COLUMN = "length"


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
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    encoded.save_to_disk(str(staging))
    try:
        staging.rename(folder)  # two experiments racing: the first rename wins, the other discards its copy
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"tokenized splits cached in {folder}")
    return load_from_disk(str(folder))
