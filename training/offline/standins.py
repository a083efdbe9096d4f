"""Stand-in models for offline runs: the real models' architecture classes, scaled down, with a
byte-level BPE tokenizer trained on the dataset, saved as model folders under a mirror root.

They exercise exactly the loading and training path of the real models; their scores say
nothing about the real models, and every result trained on one is labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.engine.models import STAND_IN_MARKER

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # CodeT5's order: pad=0, bos=1, eos=2
VOCAB_SIZE = 2000
# Widths grow with the tier so the large stand-ins still cost more than the small ones.
SIZES = {
    "small": {"hidden": 64, "layers": 2, "heads": 2},
    "medium": {"hidden": 96, "layers": 2, "heads": 4},
    "large": {"hidden": 128, "layers": 3, "heads": 4},
}
# The published models' sizes (their config.json on the hub). Replicas of this size cost the time
# and memory the real models cost, so a GPU machine without the hub can measure a tier's cost;
# their weights are random, so their scores mean nothing either.
FULL_SIZES = {
    "microsoft/codebert-base": {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072, "vocab": 50265},
    "Salesforce/codet5-small": {"hidden": 512, "layers": 6, "heads": 8, "ffn": 2048, "vocab": 32100},
    "Salesforce/codet5-base": {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072, "vocab": 32100},
    "Salesforce/codet5p-220m": {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072, "vocab": 32100},
    "Salesforce/codet5-large": {"hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "vocab": 32100},
    "Salesforce/codet5p-770m": {"hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "vocab": 32100},
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
    """A config of the model's architecture class at `size` (a SIZES or FULL_SIZES entry); the
    vocabulary is the tokenizer's, or the published one where that is larger (full-size replicas)."""
    from transformers import RobertaConfig, T5Config

    vocab_size = max(vocab_size, size.get("vocab", 0))
    feed_forward = size.get("ffn", 2 * size["hidden"])
    if architecture == "roberta":
        return RobertaConfig(vocab_size=vocab_size, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                             num_attention_heads=size["heads"], intermediate_size=feed_forward,
                             max_position_embeddings=max_length + 2, type_vocab_size=1,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return T5Config(vocab_size=vocab_size, d_model=size["hidden"], d_kv=size["hidden"] // size["heads"],
                    d_ff=feed_forward, num_layers=size["layers"], num_heads=size["heads"],
                    pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)


def size_of(model_id: str, tier: str, full_size: bool) -> dict:
    if not full_size:
        return SIZES[tier]
    if model_id not in FULL_SIZES:
        raise ValueError(f"no published size is known for {model_id!r}; known: {sorted(FULL_SIZES)}")
    return FULL_SIZES[model_id]


def build_stand_ins(plan, data_dir: Path, out_root: Path, max_length: int = 512, seed: int = 42,
                    model_ids=None, full_size: bool = False, pretrain_steps: int = 0,
                    pretrain_seconds: float | dict[str, float] = 60.0, pretrain_max_length: int = 64,
                    log=print) -> list[Path]:
    """Build a stand-in per model of the plan (or of model_ids) under out_root/<hub id>; return their
    folders. full_size: the published sizes (random weights) instead of the scaled-down ones.
    pretrain_steps: pre-train each on the training split's inputs first (pretraining.py), for at
    most that many steps and pretrain_seconds (or its value for the model's tier), on sequences of at
    most pretrain_max_length tokens. Models of the same architecture and size (CodeT5 and CodeT5+ of
    a tier) are the same stand-in: pre-trained once, saved under each name."""
    unknown = sorted(set(model_ids or ()) - set(plan.architectures))
    if unknown:
        raise ValueError(f"models not in the plan: {unknown}; the plan has {sorted(plan.architectures)}")
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    from training.offline.pretraining import corpus, pretrain

    from training.data.loading import load_dataset
    from training.plan import DatasetSpec

    dataset = load_dataset(DatasetSpec(str(data_dir), plan.dataset.text_columns, plan.dataset.label_column))
    splits, spec, fingerprint = dataset.splits, dataset.spec, dataset.fingerprint
    texts = [row[column] for row in splits["train"] for column in spec.text_columns]
    tokenizer = train_tokenizer(texts, max_length)
    encoded = corpus(splits, spec.text_columns, tokenizer, min(max_length, pretrain_max_length), seed) \
        if pretrain_steps else []
    folders, pretrained_weights = [], {}
    for tier in plan.tiers.values():
        for model_id in tier.models:
            if model_ids is not None and model_id not in model_ids:
                continue
            torch.manual_seed(seed)
            architecture = plan.architectures[model_id]
            config = stand_in_config(architecture, size_of(model_id, tier.name, full_size), len(tokenizer),
                                     max_length)
            # Saved as the hub checkpoints are (CodeBERT with its masked-LM head, CodeT5 as a seq2seq
            # LM), so loading adds a fresh classification head exactly as it does for the real models.
            auto = AutoModelForSeq2SeqLM if architecture == "t5" else AutoModelForMaskedLM
            model = auto.from_config(config)
            pretrained = None
            if pretrain_steps:
                shape = (architecture, json.dumps(config.to_diff_dict(), sort_keys=True))
                if shape not in pretrained_weights:
                    seconds = pretrain_seconds[tier.name] if isinstance(pretrain_seconds, dict) else pretrain_seconds
                    outcome = pretrain(model, architecture, tokenizer, encoded, max_steps=pretrain_steps,
                                       max_seconds=seconds, seed=seed)
                    pretrained_weights[shape] = (outcome, {k: v.clone() for k, v in model.state_dict().items()})
                    log(f"pre-trained the {model_id} stand-in: {outcome.steps} steps in {outcome.seconds:.0f} s, "
                        f"loss {outcome.first_loss:.2f} -> {outcome.last_loss:.2f}")
                pretrained, weights = pretrained_weights[shape]
                model.load_state_dict(weights)
            folder = out_root / model_id
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            info = {"stands_in_for": model_id, "architecture": type(model).__name__,
                    "size": "published size, random weights" if full_size else "scaled down",
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "tokenizer_trained_on": str(data_dir), "dataset_fingerprint": fingerprint,
                    "pretraining": None if pretrained is None else {
                        "objective": "masked language modelling" if architecture == "roberta"
                        else "span-corruption denoising",
                        "corpus": "the training split's inputs, without labels", "steps": pretrained.steps,
                        "seconds": round(pretrained.seconds, 1), "first_loss": round(pretrained.first_loss, 3),
                        "last_loss": round(pretrained.last_loss, 3)}}
            (folder / STAND_IN_MARKER).write_text(json.dumps(info, indent=2))
            folders.append(folder)
    return folders
