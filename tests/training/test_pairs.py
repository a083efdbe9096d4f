"""The offline clone-detection dataset: balanced, split by source file, and every clone a real,
compiling rewrite of its original."""

from __future__ import annotations

import ast
import json

import pytest

from training.offline.pairs import generate


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    counts = generate(folder, max_pairs=1000)
    rows = {split: [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "validation", "test")}
    return folder, counts, rows


def test_labels_are_balanced_and_many_negatives_are_hard(pairs):
    _, counts, rows = pairs
    assert counts == {split: len(items) for split, items in rows.items()} == {"train": 800, "validation": 100,
                                                                                "test": 100}
    for items in rows.values():
        clones = sum(row["label"] for row in items)
        assert clones == len(items) // 2
        hard = [row for row in items if row["kind"] == "hard negative"]
        assert len(hard) >= len(items) // 8 and all(row["source1"] == row["source2"] for row in hard)


def test_no_function_crosses_splits(pairs):
    _, _, rows = pairs
    modules = {split: {row[key] for row in items for key in ("source1", "source2")} for split, items in rows.items()}
    functions = {split: {row["func1"] for row in items} for split, items in rows.items()}
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not modules[first] & modules[second]
        assert not functions[first] & functions[second]


def test_every_clone_is_a_compiling_rewrite_that_differs_from_its_original(pairs):
    _, _, rows = pairs
    clones = [row for items in rows.values() for row in items if row["label"] == 1]
    for row in clones:
        compile(row["func2"], "<rewrite>", "exec")  # raises on a broken rewrite
        assert row["func2"] != row["func1"]
        assert row["source1"] == row["source2"]
    # the rewrites are of the kinds named: renamed identifiers, changed layout or comments
    renamed = sum(ast.parse(row["func1"]).body[0].name != ast.parse(row["func2"]).body[0].name for row in clones)
    commented = sum("#" in row["func2"] and "#" not in row["func1"] for row in clones)
    assert renamed > len(clones) / 4 and commented > len(clones) / 4


def test_the_dataset_passes_the_contract_as_a_pair_task(pairs):
    from training.data.loading import load_dataset
    from training.plan import load_plan

    folder, _, _ = pairs
    dataset = load_dataset(load_plan().dataset.__class__(str(folder), ("func1", "func2"), "label"))
    assert dataset.spec.text_columns == ("func1", "func2") and dataset.labels.positive == 1
