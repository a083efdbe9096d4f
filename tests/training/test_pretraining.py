"""Stand-ins that start from something: a short self-supervised pre-training (masked language
modelling for the RoBERTa stand-in, span-corruption denoising for the T5 ones) lowers its own loss
and is recorded with the stand-in."""

from __future__ import annotations

import json
import random

import pytest

from training.offline.pretraining import MASK_PROBABILITY, corrupt_spans
from training.plan import load_plan


def test_span_corruption_hides_spans_behind_sentinels_and_asks_for_them_back():
    ids = list(range(10, 110))
    inputs, target = corrupt_spans(ids, special={1, 2}, mask_id=4, eos_id=2, rng=random.Random(0))
    hidden = [t for t in target if t not in (4, 2)]
    assert len(hidden) == round(100 * MASK_PROBABILITY) and target[-1] == 2
    # the input with each sentinel replaced by its span is the original again
    spans, current = [], []
    for token in target[1:-1]:
        if token == 4:
            spans.append(current)
            current = []
        else:
            current.append(token)
    spans.append(current)
    rebuilt = []
    for token in inputs:
        rebuilt.extend(spans.pop(0) if token == 4 else [token])
    assert rebuilt == ids and not spans


@pytest.fixture(scope="module")
def clone_pairs(tmp_path_factory):
    from training.offline.pairs import generate

    folder = tmp_path_factory.mktemp("clones")
    generate(folder, max_pairs=500)
    return folder


def test_pretraining_lowers_each_objective_and_is_recorded(tmp_path, clone_pairs):
    from training.offline.standins import build_stand_ins

    lines = []
    build_stand_ins(load_plan(), clone_pairs, tmp_path, max_length=128, pretrain_steps=150, pretrain_seconds=120,
                    model_ids=["microsoft/codebert-base", "Salesforce/codet5-small"], log=lines.append)
    for model_id, objective in (("microsoft/codebert-base", "masked language modelling"),
                                ("Salesforce/codet5-small", "span-corruption denoising")):
        info = json.loads((tmp_path / model_id / "stand_in.json").read_text())["pretraining"]
        assert info["objective"] == objective and info["steps"] == 150
        assert info["last_loss"] < info["first_loss"] - 1.0, info  # from about ln(2000) = 7.6
    assert len(lines) == 2 and all("pre-trained the" in line for line in lines)


def test_stand_ins_of_the_same_shape_are_pre_trained_once(tmp_path, clone_pairs):
    """CodeT5-base and CodeT5+ 220M have the same stand-in: one pre-training, the same weights."""
    from safetensors.torch import load_file

    from training.offline.standins import build_stand_ins

    lines = []
    build_stand_ins(load_plan(), clone_pairs, tmp_path, max_length=128, pretrain_steps=10, log=lines.append,
                    model_ids=["Salesforce/codet5-base", "Salesforce/codet5p-220m"])
    assert len(lines) == 1
    first, second = (load_file(tmp_path / m / "model.safetensors")
                     for m in ("Salesforce/codet5-base", "Salesforce/codet5p-220m"))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
