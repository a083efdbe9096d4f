"""Tokenization: pairs share the length budget fairly; nothing is padded before batching."""

from __future__ import annotations

import datasets
from transformers import AutoTokenizer

from training.engine.tokenization import LENGTH_COLUMN, encode_splits


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
