"""Stand-in configs: the full-size replicas must have the published models' parameter counts,
or the GPU check's cost figures would describe some other model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from training.offline.standins import FULL_SIZES, VOCAB_SIZE, build_stand_ins, stand_in_config
from training.plan import load_plan

# Parameter counts of the published checkpoints (their model cards / safetensors headers).
PUBLISHED_PARAMETERS = {
    "microsoft/codebert-base": 124.6e6,  # RobertaModel 124.6M (+ 0.6M for the classification head)
    "Salesforce/codet5-small": 60.5e6,
    "Salesforce/codet5-base": 222.9e6,
    "Salesforce/codet5p-220m": 222.9e6,
    "Salesforce/codet5-large": 737.6e6,
    "Salesforce/codet5p-770m": 737.6e6,
}


@pytest.mark.parametrize("model_id", sorted(PUBLISHED_PARAMETERS))
def test_full_size_replicas_have_the_published_parameter_counts(model_id):
    architecture = load_plan().architectures[model_id]
    config = stand_in_config(architecture, FULL_SIZES[model_id], VOCAB_SIZE, 512)
    auto = AutoModelForSeq2SeqLM if architecture == "t5" else AutoModelForSequenceClassification
    with torch.device("meta"):  # shapes only: no memory, no time
        model = auto.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == pytest.approx(PUBLISHED_PARAMETERS[model_id], rel=0.01)


def test_unknown_model_is_named(tmp_path):
    with pytest.raises(ValueError, match="not-a/model"):
        build_stand_ins(load_plan(), tmp_path, tmp_path, model_ids=["not-a/model"], full_size=True)
