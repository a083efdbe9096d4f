"""Tokenization: pairs share the length budget fairly; nothing is padded before batching; the cache
is written whole or not at all."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer

from training.engine.tokenization import LENGTH_COLUMN, clear_abandoned_staging, encode_splits, store


def test_long_pairs_split_the_budget_and_short_ones_keep_everything(model_root):
    tokenizer = AutoTokenizer.from_pretrained(model_root / "Salesforce/codet5-small")
    long_a, long_b = "x = 1\n" * 200, "y = 2\n" * 300
    short = "z = 3"
    split = datasets.Dataset.from_dict({"func1": [long_a, short], "func2": [long_b, long_b], "label": [1, 0]})
    encoded = encode_splits(datasets.DatasetDict(train=split), tokenizer, ("func1", "func2"), "label", [0, 1], 64)
    first, second = encoded["train"][0], encoded["train"][1]
    assert len(first["input_ids"]) == first[LENGTH_COLUMN] == 64  # no padding, at the budget
    eos = tokenizer.eos_token_id
    separator = first["input_ids"].index(eos)  # <s> A </s></s> B </s>
    a_tokens, b_tokens = separator - 1, 64 - separator - 3
    assert abs(a_tokens - b_tokens) <= 1  # both long: an even share each
    short_tokens = len(tokenizer(short, add_special_tokens=False)["input_ids"])
    assert second["input_ids"][1:1 + short_tokens] == tokenizer(short, add_special_tokens=False)["input_ids"]
    assert len(second["input_ids"]) == 64  # the long partner takes the rest
    assert first["labels"] == 1 and second["labels"] == 0


def test_a_failed_save_leaves_nothing_and_a_whole_one_lands_at_once(tmp_path):
    class FullDisk:
        def save_to_disk(self, path):
            (Path(path) / "data-00000.arrow").write_bytes(b"x" * 1024)  # part written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    folder = tmp_path / ("a" * 20)
    with pytest.raises(OSError, match="No space left"):
        store(FullDisk(), folder)
    assert list(tmp_path.iterdir()) == []  # no staging folder, no cache entry

    split = datasets.Dataset.from_dict({"input_ids": [[1, 2]], "labels": [1]})
    store(datasets.DatasetDict(train=split), folder)
    assert (folder / "dataset_dict.json").is_file() and [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_staging_abandoned_by_a_killed_save_is_cleared_after_a_day_and_a_young_one_kept(tmp_path):
    old, young = tmp_path / (".%s-k1ll3d" % ("b" * 20)), tmp_path / (".%s-busy" % ("c" * 20))
    cache_entry, unrelated = tmp_path / ("d" * 20), tmp_path / ".keep-me"
    for path in (old, young, cache_entry, unrelated):
        path.mkdir()
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (old, cache_entry, unrelated):
        os.utime(path, (two_days_ago, two_days_ago))
    assert clear_abandoned_staging(tmp_path) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, cache_entry.name, unrelated.name])
