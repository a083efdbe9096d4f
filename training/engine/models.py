"""Find and load a model: from a local mirror ($SWEEP_MODEL_ROOT/<hub id>) when it holds the
model, else from the hub by id; always through the Auto classes' from_pretrained."""

from __future__ import annotations

import json
from pathlib import Path

STAND_IN_MARKER = "stand_in.json"


def resolve_model_source(model_id: str, model_root: str | None) -> str:
    """A local folder if the mirror has this model, else the hub id itself."""
    if model_root is not None and (Path(model_root) / model_id / "config.json").is_file():
        return str(Path(model_root) / model_id)
    return model_id


def stand_in_info(source: str) -> dict | None:
    """What the stand-in builder wrote about a stand-in folder; None for a real model."""
    marker = Path(source) / STAND_IN_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def load_tokenizer_and_model(source: str, num_labels: int, load_model: bool = True):
    """(tokenizer, model or None); the model with SDPA attention where its class supports it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if not load_model:
        return tokenizer, None
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels,
                                                                   attn_implementation="sdpa")
    except ValueError:  # this architecture has no SDPA path
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model
