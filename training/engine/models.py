"""Find and load a model: from a local mirror ($SWEEP_MODEL_ROOT/<hub id>) when it holds the
model, else from the hub by id; always through the Auto classes' from_pretrained."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

STAND_IN_MARKER = "stand_in.json"


def resolve_model_source(model_id: str, model_root: str | None) -> str:
    """A local folder if the id is one (an absolute path) or the mirror has this model, else the
    hub id itself."""
    if model_id.startswith("/"):
        return model_id
    if model_root is not None and (Path(model_root) / model_id / "config.json").is_file():
        return str(Path(model_root) / model_id)
    return model_id


def stand_in_info(source: str) -> dict | None:
    """What the stand-in builder wrote about a stand-in folder; None for a real model."""
    marker = Path(source) / STAND_IN_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def load_tokenizer_and_model(source: str, label_values: list, load_model: bool = True):
    """(tokenizer, model or None); the model with SDPA attention where its class supports it, a
    classification head for these labels (named in its config, so the checkpoint says what each
    output means), replacing any head of another size the checkpoint has."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if not load_model:
        return tokenizer, None
    names = {index: str(value) for index, value in enumerate(label_values)}
    head = {"num_labels": len(label_values), "id2label": names, "label2id": {v: k for k, v in names.items()},
            "ignore_mismatched_sizes": True}
    report = logging.getLogger("transformers.modeling_utils")
    quiet = _WithoutLoadReport()
    report.addFilter(quiet)  # its table of every new weight reads as an error in a task log; one line instead
    try:
        try:
            model, loaded = AutoModelForSequenceClassification.from_pretrained(
                source, attn_implementation="sdpa", output_loading_info=True, **head)
        except ValueError:  # this architecture has no SDPA path
            model, loaded = AutoModelForSequenceClassification.from_pretrained(source, output_loading_info=True, **head)
    finally:
        report.removeFilter(quiet)
    for line in loading_summary(model.base_model_prefix, loaded, len(label_values)):
        print(line)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


class _WithoutLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def loading_summary(encoder_prefix: str, loaded: dict, label_count: int) -> list[str]:
    """What from_pretrained did not take from the checkpoint, in a line or two: a new head for the
    labels is what fine-tuning expects; weights of the encoder that start random are not."""
    missing = set(loaded["missing_keys"]) | {key for key, *_ in loaded["mismatched_keys"]}
    head = sorted(key for key in missing if not key.startswith(encoder_prefix + "."))
    encoder = sorted(missing - set(head))
    lines = []
    if head:
        modules = sorted({key.rsplit(".", 1)[0] for key in head})
        lines.append(f"a new classification head for {label_count} labels ({', '.join(modules)}): expected, "
                     "fine-tuning trains it")
    if encoder:
        lines.append(f"warning: {len(encoder)} weight(s) of the encoder are not in the checkpoint and start random "
                     f"(e.g. {', '.join(encoder[:3])}): is this the model you meant?")
    if loaded["unexpected_keys"]:
        unused = sorted(loaded["unexpected_keys"])
        lines.append(f"{len(unused)} weight(s) of the checkpoint are not used by a classifier "
                     f"(e.g. {', '.join(unused[:2])}): expected for a pre-trained language model")
    return lines


def local_parameter_count(source: str) -> int | None:
    """Parameters of a local model folder, from its safetensors headers (no weights are read)."""
    files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else []
    total = 0
    for path in files:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for size in tensor["shape"]:
                    count *= size
                total += count
    return total or None
