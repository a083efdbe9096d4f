"""Stand-in models for offline runs: the real models' architecture classes, scaled down, with a
byte-level BPE tokenizer trained on the dataset, saved as model folders under a mirror root.

They exercise exactly the loading and training path of the real models; their scores say
nothing about the real models, and every result trained on one is labelled as such.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from training.engine.models import STAND_IN_MARKER

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # CodeT5's order: pad=0, bos=1, eos=2
VOCAB_SIZE = 2000
BUILDER = "training.offline.standins 4"  # in stand_in.json: stand-ins built by another version are built again
# Widths grow with the tier so the large stand-ins still cost more than the small ones.
SIZES = {
    "small": {"hidden": 64, "layers": 2, "heads": 4},
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


def train_tokenizer(texts):
    """A byte-level BPE of VOCAB_SIZE tokens (a `tokenizers` Tokenizer) trained on texts."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    return bpe._tokenizer


def stand_in_tokenizer(trained, max_length: int, segments: bool):
    """The trained BPE as a transformers tokenizer that joins a pair as RoBERTa does (<s> A </s></s> B
    </s>). segments: also give segment ids, 1 from the second snippet's </s></s> on, as BERT does (the
    RoBERTa stand-in has two segment embeddings; CodeBERT's tokenizer gives none, and the engine
    passes on what the tokenizer gives)."""
    import copy

    from tokenizers.processors import RobertaProcessing, TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    trained = copy.deepcopy(trained)
    if segments:
        trained.post_processor = TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s>:1 $B:1 </s>:1",
                                                    special_tokens=[("<s>", 1), ("</s>", 2)])
    else:
        trained.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 1))
    names = ["input_ids", "token_type_ids", "attention_mask"] if segments else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=trained, model_max_length=max_length, pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
        model_input_names=names)


def stand_in_config(architecture: str, size: dict, vocab_size: int, max_length: int, segments: bool = False):
    """A config of the model's architecture class at `size` (a SIZES or FULL_SIZES entry); the
    vocabulary is the tokenizer's, or the published one where that is larger (full-size replicas)."""
    from transformers import RobertaConfig, T5Config

    vocab_size = max(vocab_size, size.get("vocab", 0))
    feed_forward = size.get("ffn", 2 * size["hidden"])
    # The scaled-down ones: no dropout and (RoBERTa) a wider initialisation, since tiny models underfit
    # a CPU-minute's training and their attention stays uniform for hundreds of steps from the
    # published 0.02. segments: two segment embeddings (RoBERTa), for pairs. Full-size replicas keep
    # the published values.
    scaled_down = "vocab" not in size
    dropout = 0.0 if scaled_down else 0.1
    if architecture == "roberta":
        return RobertaConfig(vocab_size=vocab_size, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                             num_attention_heads=size["heads"], intermediate_size=feed_forward,
                             max_position_embeddings=max_length + 2, type_vocab_size=2 if segments else 1,
                             hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                             initializer_range=0.1 if scaled_down else 0.02,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return T5Config(vocab_size=vocab_size, d_model=size["hidden"], d_kv=size["hidden"] // size["heads"],
                    d_ff=feed_forward, num_layers=size["layers"], num_heads=size["heads"], dropout_rate=dropout,
                    pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)


def size_of(model_id: str, tier: str, full_size: bool) -> dict:
    if not full_size:
        return SIZES[tier]
    if model_id not in FULL_SIZES:
        raise ValueError(f"no published size is known for {model_id!r}; known: {sorted(FULL_SIZES)}")
    return FULL_SIZES[model_id]


def build_stand_ins(plan, data_dir: Path, out_root: Path, max_length: int = 512, seed: int = 42,
                    model_ids=None, full_size: bool = False, pretrain_steps: int | dict[str, int] = 0,
                    pretrain_seconds: float | dict[str, float] | None = None, pretrain_max_length: int = 64,
                    log=print) -> list[Path]:
    """Build a stand-in per model of the plan (or of model_ids) under out_root/<hub id>; return their
    folders. full_size: the published sizes (random weights) instead of the scaled-down ones.
    pretrain_steps: pre-train each on the training split's inputs first (pretraining.py), for that
    many steps (a number, or a dict by "<tier>/<architecture>" or by tier), on sequences of at most
    pretrain_max_length tokens. pretrain_seconds (optional, the same shapes) is a limit, never a
    way to shorten: a stand-in that hits it is not saved, and PretrainingCutShort says so. Models of
    the same architecture and size (CodeT5 and CodeT5+ of a tier) are the same stand-in: pre-trained
    once, saved under each name."""
    unknown = sorted(set(model_ids or ()) - set(plan.architectures))
    if unknown:
        raise ValueError(f"models not in the plan: {unknown}; the plan has {sorted(plan.architectures)}")
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    from training.data.loading import load_dataset
    from training.offline.pretraining import corpus, pretrain
    from training.plan import DatasetSpec

    dataset = load_dataset(DatasetSpec(str(data_dir), plan.dataset.text_columns, plan.dataset.label_column))
    splits, spec, fingerprint = dataset.splits, dataset.spec, dataset.fingerprint
    texts = [row[column] for row in splits["train"] for column in spec.text_columns]
    trained = train_tokenizer(texts)
    segments = len(spec.text_columns) == 2 and not full_size
    tokenizers = {"roberta": stand_in_tokenizer(trained, max_length, segments),
                  "t5": stand_in_tokenizer(trained, max_length, False)}
    pretrain_length = min(max_length, pretrain_max_length)
    encoded = corpus(splits, spec.text_columns, tokenizers["t5"], pretrain_length, seed) if pretrain_steps else None
    folders, pretrained_weights = [], {}
    for tier in plan.tiers.values():
        for model_id in tier.models:
            if model_ids is not None and model_id not in model_ids:
                continue
            torch.manual_seed(seed)
            architecture = plan.architectures[model_id]
            tokenizer = tokenizers[architecture]
            config = stand_in_config(architecture, size_of(model_id, tier.name, full_size), len(tokenizer),
                                     max_length, segments)
            # Saved as the hub checkpoints are (CodeBERT with its masked-LM head, CodeT5 as a seq2seq
            # LM), so loading adds a fresh classification head exactly as it does for the real models.
            auto = AutoModelForSeq2SeqLM if architecture == "t5" else AutoModelForMaskedLM
            model = auto.from_config(config)
            pretrained = None
            if pretrain_steps:
                shape = (architecture, json.dumps(config.to_diff_dict(), sort_keys=True))
                if shape not in pretrained_weights:
                    steps = per_model(pretrain_steps, tier.name, architecture)
                    limit = per_model(pretrain_seconds, tier.name, architecture) if pretrain_seconds else None
                    outcome = pretrain(model, architecture, tokenizer, encoded, max_steps=steps,
                                       max_seconds=limit or math.inf, max_length=pretrain_length, seed=seed)
                    if outcome.steps < steps:
                        raise PretrainingCutShort(
                            f"the {model_id} stand-in reached {outcome.steps} of its {steps} pre-training steps "
                            f"before its time limit of {limit:g} s (a busy machine?); nothing was saved for it: "
                            "a stand-in short of its steps would learn little and be cached for good. Run again "
                            "on a quieter machine, or without the limit")
                    pretrained_weights[shape] = (outcome, {k: v.clone() for k, v in model.state_dict().items()})
                    pair = "" if outcome.first_overlap_loss is None else \
                        f", pair overlap error {outcome.first_overlap_loss:.3f} -> {outcome.last_overlap_loss:.3f}"
                    log(f"pre-trained the {model_id} stand-in: {outcome.steps} steps in {outcome.seconds:.0f} s, "
                        f"loss {outcome.first_loss:.2f} -> {outcome.last_loss:.2f}{pair}")
                pretrained, weights = pretrained_weights[shape]
                model.load_state_dict(weights)
            folder = out_root / model_id
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            info = {"stands_in_for": model_id, "builder": BUILDER, "architecture": type(model).__name__,
                    "size": "published size, random weights" if full_size else "scaled down",
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "tokenizer_trained_on": str(data_dir), "dataset_fingerprint": fingerprint,
                    "pretraining": None if pretrained is None else {
                        "objective": "masked language modelling" if architecture == "roberta"
                        else "span-corruption denoising",
                        "pair_objective": None if pretrained.first_overlap_loss is None
                        else "the token-set overlap of the two snippets, from the classifier's reading position",
                        "corpus": "the training split's inputs, without labels", "steps": pretrained.steps,
                        "planned_steps": per_model(pretrain_steps, tier.name, architecture),
                        "seconds": round(pretrained.seconds, 1), "first_loss": round(pretrained.first_loss, 3),
                        "last_loss": round(pretrained.last_loss, 3),
                        "first_overlap_loss": _rounded(pretrained.first_overlap_loss),
                        "last_overlap_loss": _rounded(pretrained.last_overlap_loss)}}
            (folder / STAND_IN_MARKER).write_text(json.dumps(info, indent=2))
            folders.append(folder)
    return folders


class PretrainingCutShort(RuntimeError):
    """A stand-in's pre-training hit its time limit before its steps: it is not saved."""


def missing_pretraining(info: dict, planned_steps: int) -> str | None:
    """Why a cached stand-in (its stand_in.json) is short of its pre-training, or None."""
    pretraining = info.get("pretraining") or {}
    done = pretraining.get("steps") or 0
    return None if done >= planned_steps else f"pre-trained {done} of {planned_steps} steps"


def per_model(value, tier: str, architecture: str):
    """value, or its entry for "<tier>/<architecture>", else for the tier."""
    if not isinstance(value, dict):
        return value
    return value.get(f"{tier}/{architecture}", value.get(tier))


def _rounded(value):
    return None if value is None else round(value, 4)
