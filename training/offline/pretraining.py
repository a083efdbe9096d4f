"""A short self-supervised pre-training of a stand-in, so that fine-tuning starts from something, as
it does for the real models: masked language modelling for the RoBERTa stand-in (CodeBERT's own
objective), denoising for the T5 ones (masked spans in, the whole text out, as in BART and in
CodeT5's identifier-aware denoising).

The corpus is the training split's inputs without their labels (task-adaptive pre-training): each
text on its own and, for pair data, each pair joined as the classifier sees it, and each text joined
with itself (as in XLM's translation language modelling, a masked token can then be read off the
other half: it teaches the attention that compares two snippets, which a 64-wide model does not
find from pair labels alone). Validation and test rows are never seen. The run is bounded by a step count and a time limit, whichever comes
first, and reports both.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

MASK_PROBABILITY = 0.15  # BERT's and CodeBERT's rate
MEAN_SPAN = 3  # T5's mean span length for its span corruption
LEARNING_RATE = 3e-3  # tiny models: a large rate, a short warm-up
WARMUP_STEPS = 20


@dataclass(frozen=True)
class Pretraining:
    steps: int
    seconds: float
    first_loss: float
    last_loss: float  # mean of the last 20 steps


def corpus(splits, text_columns, tokenizer, max_length: int, seed: int) -> list[list[int]]:
    """Token ids of the training split's texts, one by one and (for pairs) joined, shuffled."""
    train = splits["train"]
    columns = [list(train[column]) for column in text_columns]
    encoded = [tokenizer(text, truncation=True, max_length=max_length)["input_ids"] for column in columns
               for text in column]
    if len(columns) == 2:
        encoded += tokenizer(columns[0], columns[1], truncation="longest_first", max_length=max_length)["input_ids"]
        texts = columns[0] + columns[1]
        encoded += tokenizer(texts, texts, truncation="longest_first", max_length=max_length)["input_ids"]
    random.Random(seed).shuffle(encoded)
    return encoded


def corrupt_spans(ids: list[int], special: set[int], mask_id: int, eos_id: int,
                  rng: random.Random) -> tuple[list[int], list[int]]:
    """T5's span corruption: about MASK_PROBABILITY of the tokens, in spans of mean MEAN_SPAN, each
    span replaced by one sentinel in the input; the target is each sentinel followed by its span.
    One sentinel token serves every span (the stand-ins' vocabulary has no numbered ones); the
    spans' order tells them apart."""
    length = len(ids)
    masked = [False] * length
    budget = max(1, round(sum(t not in special for t in ids) * MASK_PROBABILITY))
    while budget > 0:
        start = rng.randrange(length)
        span = max(1, round(rng.expovariate(1 / MEAN_SPAN)))
        for i in range(start, min(start + span, length)):
            if ids[i] not in special and not masked[i] and budget > 0:
                masked[i], budget = True, budget - 1
        if not any(t not in special for t, m in zip(ids, masked) if not m):
            break
    inputs, target = [], []
    for i, token in enumerate(ids):
        if masked[i]:
            if i == 0 or not masked[i - 1]:
                inputs.append(mask_id)
                target.append(mask_id)
            target.append(token)
        else:
            inputs.append(token)
    return inputs, target + [eos_id]


def padded(rows, pad_value: int):
    import torch

    width = max(len(r) for r in rows)
    values = torch.full((len(rows), width), pad_value, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        values[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
    return values, attention


def masked_lm_loss(model, inputs, attention, labels):
    """The masked-LM loss from the masked positions only: the vocabulary projection of every other
    position is two thirds of a tiny model's compute, spent on logits the loss ignores."""
    import torch.nn.functional as F

    hidden = model.roberta(input_ids=inputs, attention_mask=attention).last_hidden_state
    chosen = labels != -100
    return F.cross_entropy(model.lm_head(hidden[chosen]), labels[chosen])


def batches(encoded: list[list[int]], batch_size: int, pad_id: int):
    import torch

    while True:
        for start in range(0, len(encoded) - batch_size + 1, batch_size):
            rows = encoded[start:start + batch_size]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, :len(row)] = torch.tensor(row)
            yield ids


def pretrain(model, architecture: str, tokenizer, encoded: list[list[int]], *, max_steps: int,
             max_seconds: float, batch_size: int = 32, seed: int = 42) -> Pretraining:
    """Train `model` (a RobertaForMaskedLM or a T5ForConditionalGeneration) in place."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS)
                                                 * max(0.1, 1 - step / max_steps))
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY, seed=seed) \
        if architecture == "roberta" else None
    special = set(tokenizer.all_special_ids)
    losses, started, step = [], time.monotonic(), 0
    for ids in batches(encoded, batch_size, tokenizer.pad_token_id):
        if step >= max_steps or time.monotonic() - started > max_seconds:
            break
        attention = (ids != tokenizer.pad_token_id).long()
        if mlm is not None:
            inputs, labels = mlm.torch_mask_tokens(ids.clone())
            labels[attention == 0] = -100
            loss = masked_lm_loss(model, inputs, attention, labels)
        else:
            inputs, targets = zip(*(corrupt_spans(row[row != tokenizer.pad_token_id].tolist(), special,
                                                  tokenizer.mask_token_id, tokenizer.eos_token_id, rng)
                                    for row in ids))
            inputs, attention = padded(inputs, tokenizer.pad_token_id)
            labels, _ = padded(targets, -100)
            loss = model(input_ids=inputs, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if math.isfinite(loss.item()):
            losses.append(loss.item())
        step += 1
    model.eval()
    tail = losses[-20:] or [float("nan")]
    return Pretraining(step, time.monotonic() - started, losses[0] if losses else float("nan"), sum(tail) / len(tail))
