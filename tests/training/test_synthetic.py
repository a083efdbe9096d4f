"""The offline dataset: real stdlib code, both labels, no source file across splits, reproducible."""

from __future__ import annotations

import ast
import json

from training.offline.synthetic import generate


def read(folder, split):
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]


def test_dataset_is_balanced_split_by_source_and_parses(dataset_dir):
    splits = {split: read(dataset_dir, split) for split in ("train", "validation", "test")}
    assert all(splits.values())
    train_labels = [row["label"] for row in splits["train"]]
    assert 0.35 < sum(train_labels) / len(train_labels) < 0.65
    sources = {split: {row["source"] for row in rows} for split, rows in splits.items()}
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    for row in splits["validation"]:
        assert isinstance(ast.parse(row["code"]).body[0], (ast.FunctionDef, ast.AsyncFunctionDef))
    manifest = json.loads((dataset_dir / "dataset.json").read_text())
    assert (manifest["text_columns"], manifest["label_column"]) == (["code"], "label")


def test_generation_is_reproducible(tmp_path, dataset_dir):
    generate(tmp_path, max_examples=400)
    assert (tmp_path / "train.jsonl").read_bytes() == (dataset_dir / "train.jsonl").read_bytes()
