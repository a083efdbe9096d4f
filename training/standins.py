"""Stand-in models for offline runs: the real models' architecture classes, scaled down, with a
byte-level BPE tokenizer trained on the dataset, saved as model folders under a mirror root.

They exercise exactly the loading and training path of the real models; their scores say
nothing about the real models, and every result trained on one is labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.models import STAND_IN_MARKER

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # CodeT5's order: pad=0, bos=1, eos=2
VOCAB_SIZE = 2000
# Widths grow with the tier so the large stand-ins still cost more than the small ones.
SIZES = {
    "small": {"hidden": 64, "layers": 2, "heads": 2},
    "medium": {"hidden": 96, "layers": 2, "heads": 4},
    "large": {"hidden": 128, "layers": 3, "heads": 4},
}


def train_tokenizer(texts, max_length: int):
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 1))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, model_max_length=max_length, pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def stand_in_config(architecture: str, size: dict, vocab_size: int, max_length: int):
    from transformers import RobertaConfig, T5Config

    if architecture == "roberta":
        return RobertaConfig(vocab_size=vocab_size, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                             num_attention_heads=size["heads"], intermediate_size=2 * size["hidden"],
                             max_position_embeddings=max_length + 2, type_vocab_size=1,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return T5Config(vocab_size=vocab_size, d_model=size["hidden"], d_kv=size["hidden"] // size["heads"],
                    d_ff=2 * size["hidden"], num_layers=size["layers"], num_heads=size["heads"],
                    pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)


def build_stand_ins(plan, data_dir: Path, out_root: Path, max_length: int = 512, seed: int = 42,
                    model_ids=None) -> list[Path]:
    """Build a stand-in per model of the plan (or of model_ids) under out_root/<hub id>; return their folders."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    from training.data import load_splits, resolve_spec
    from training.plan import DatasetSpec

    spec = resolve_spec(DatasetSpec(str(data_dir), plan.dataset.text_columns, plan.dataset.label_column))
    splits, fingerprint = load_splits(spec)
    texts = [row[column] for row in splits["train"] for column in spec.text_columns]
    tokenizer = train_tokenizer(texts, max_length)
    folders = []
    for tier in plan.tiers.values():
        for model_id in tier.models:
            if model_ids is not None and model_id not in model_ids:
                continue
            torch.manual_seed(seed)
            architecture = plan.architectures[model_id]
            config = stand_in_config(architecture, SIZES[tier.name], len(tokenizer), max_length)
            # Saved as the hub checkpoints are (CodeT5 as a seq2seq LM), so loading adds a fresh
            # classification head exactly as it does for the real models.
            auto = AutoModelForSeq2SeqLM if architecture == "t5" else AutoModelForSequenceClassification
            model = auto.from_config(config)
            folder = out_root / model_id
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            info = {"stands_in_for": model_id, "architecture": type(model).__name__,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "tokenizer_trained_on": str(data_dir), "dataset_fingerprint": fingerprint}
            (folder / STAND_IN_MARKER).write_text(json.dumps(info, indent=2))
            folders.append(folder)
    return folders
