"""A short self-supervised pre-training of a stand-in, so that fine-tuning starts from something, as
it does for the real models. Two objectives, both from the training split's inputs without their
labels (task-adaptive pre-training); validation and test rows are never seen:

- The architecture's own: masked language modelling for the RoBERTa stand-in (CodeBERT's
  objective), span-corruption denoising for the T5 ones (CodeT5's).
- For pair data, a pair objective, as BERT pre-trains next-sentence prediction beside masked
  language modelling: from where the classifier will read the pair (RoBERTa's first token, T5's
  last end-of-sequence token) predict how much of the two snippets' vocabulary is shared (the
  Jaccard overlap of their token sets, computed from the input itself), and, per token, whether it
  occurs in the other snippet, from the first layer's output (which makes the first layer match
  tokens across the snippets, leaving the second only to average). The pairs are each training
  pair as given and each first snippet with a second snippet drawn at random, so the overlap spans
  its range. On pair data the architecture's own loss runs every DENOISE_EVERY-th step, the pair
  objective on every step. A 64-wide encoder does not learn to compare two snippets from a few hundred labelled
  pairs, nor from masked language modelling in a CPU-minute (validation F1 0.5-0.7 either way);
  with this objective it does (docs/decisions/0012).

The run is bounded by a step count and a time limit, whichever comes first, and reports both.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

MASK_PROBABILITY = 0.15  # BERT's and CodeBERT's rate
MEAN_SPAN = 3  # T5's mean span length for its span corruption
LEARNING_RATE = 1e-3  # tiny models: a large rate, a short warm-up
WARMUP_STEPS = 20
OVERLAP_WEIGHT = 10.0  # the overlap's squared error (in [0, 1]) against a cross-entropy in nats
TOKEN_WEIGHT = 1.0  # the per-token "is it in the other snippet" loss, read after the first layer
DENOISE_EVERY = 4  # with pairs: the architecture's own loss every 4th step, the pair loss every step


@dataclass(frozen=True)
class Pretraining:
    steps: int
    seconds: float
    first_loss: float  # the architecture's own objective: mean of the first 20 steps it ran
    last_loss: float  # ... and of the last 20
    first_overlap_loss: float | None = None  # the pair objective's squared error, None without pairs
    last_overlap_loss: float | None = None


@dataclass(frozen=True)
class Corpus:
    """Token ids without special tokens: pairs (for pair data) or single texts, shuffled."""
    pairs: list[tuple[list[int], list[int]]]
    texts: list[list[int]]


def corpus(splits, text_columns, tokenizer, max_length: int, seed: int) -> Corpus:
    """The training split's inputs: each pair as given and re-paired at random, or each text."""
    rng = random.Random(seed)
    train = splits["train"]
    columns = [[ids[:max_length] for ids in tokenizer(list(train[column]), add_special_tokens=False, truncation=True,
                                                      max_length=max_length)["input_ids"]]
               for column in text_columns]
    if len(columns) == 2:
        first, second = columns
        shuffled = rng.sample(second, len(second))
        pairs = list(zip(first, second)) + list(zip(first, shuffled))
        rng.shuffle(pairs)
        return Corpus(pairs, [])
    texts = [ids for ids in columns[0] if ids]
    rng.shuffle(texts)
    return Corpus([], texts)


def truncate_pair(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """The tokenizer's longest-first truncation: the longer snippet loses tokens until both fit."""
    excess = len(first) + len(second) - budget
    if excess <= 0:
        return first, second
    longer, shorter = (first, second) if len(first) >= len(second) else (second, first)
    cut = min(excess, len(longer) - len(shorter))
    rest = excess - cut
    kept_longer, kept_shorter = len(longer) - cut - (rest + 1) // 2, len(shorter) - rest // 2
    if longer is first:
        return first[:kept_longer], second[:kept_shorter]
    return first[:kept_shorter], second[:kept_longer]


def overlap(first: list[int], second: list[int]) -> float:
    a, b = set(first), set(second)
    return len(a & b) / max(1, len(a | b))


def pair_batch(pairs, tokenizer, max_length: int, with_types: bool):
    """<s> A </s></s> B </s>, as the tokenizer joins a pair; segment ids 0 for A, 1 for the rest (when
    the stand-in takes them); the overlap of each truncated pair."""
    import torch

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows, types, targets, shared = [], [], [], []
    for first, second in pairs:
        first, second = truncate_pair(first, second, max_length - 4)
        rows.append([bos, *first, eos, eos, *second, eos])
        types.append([0] * (len(first) + 2) + [1] * (len(second) + 2))
        targets.append(overlap(first, second))
        in_first, in_second = set(first), set(second)
        shared.append([-1, *(int(t in in_second) for t in first), -1, -1, *(int(t in in_first) for t in second), -1])
    ids, attention = padded(rows, tokenizer.pad_token_id)
    segment = padded(types, 0)[0] if with_types else None
    return ids, attention, segment, (torch.tensor(targets), padded(shared, -1)[0])


def text_batch(texts, tokenizer, max_length: int):
    rows = [[tokenizer.bos_token_id, *ids[:max_length - 2], tokenizer.eos_token_id] for ids in texts]
    ids, attention = padded(rows, tokenizer.pad_token_id)
    return ids, attention, None, None


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


class RobertaObjectives:
    """Masked language modelling on every DENOISE_EVERY-th step; the pair overlap on every step, from
    the unmasked pair's first token (a second forward pass where both run)."""

    def __init__(self, model, tokenizer, seed: int):
        import torch
        from transformers import DataCollatorForLanguageModeling

        hidden = model.config.hidden_size
        self.model = model
        self.head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.token_head = torch.nn.Linear(hidden, 1)
        self.mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY, seed=seed)
        self.with_types = model.config.type_vocab_size > 1

    def parameters(self):
        return [*self.model.parameters(), *self.head.parameters(), *self.token_head.parameters()]

    def losses(self, step, ids, attention, segment, targets):
        import torch.nn.functional as F

        own = pair = None
        if targets is None or step % DENOISE_EVERY == 0:
            inputs, labels = self.mlm.torch_mask_tokens(ids.clone())
            labels[attention == 0] = -100
            hidden = self.model.roberta(input_ids=inputs, attention_mask=attention,
                                        token_type_ids=segment).last_hidden_state
            chosen = labels != -100
            # the vocabulary projection of the masked positions only: the others' logits are ignored
            own = F.cross_entropy(self.model.lm_head(hidden[chosen]), labels[chosen])
        if targets is not None:
            targets, shared = targets
            states = self.model.roberta(input_ids=ids, attention_mask=attention, token_type_ids=segment,
                                        output_hidden_states=True).hidden_states
            pair = F.mse_loss(self.head(states[-1][:, 0]).squeeze(-1), targets)
            if TOKEN_WEIGHT:
                known = shared >= 0
                pair = pair + TOKEN_WEIGHT * F.binary_cross_entropy_with_logits(
                    self.token_head(states[1][known]).squeeze(-1), shared[known].float())
        return own, pair


class T5Objectives:
    """Span corruption through the seq2seq model; the pair overlap through a sequence classifier
    built on the same modules, read where fine-tuning reads it (the decoder's last </s>)."""

    def __init__(self, model, tokenizer, seed: int):
        import copy

        import torch
        from transformers import T5ForSequenceClassification

        config = copy.deepcopy(model.config)
        config.num_labels = 1
        self.model, self.tokenizer, self.rng = model, tokenizer, random.Random(seed)
        self.classifier = T5ForSequenceClassification(config)
        self.classifier.transformer.shared = model.shared
        self.classifier.transformer.encoder = model.encoder
        self.classifier.transformer.decoder = model.decoder
        self.special = set(tokenizer.all_special_ids)
        self.with_types = False
        self.token_head = torch.nn.Linear(config.d_model, 1)

    def parameters(self):
        return [*self.model.parameters(), *self.classifier.classification_head.parameters(),
                *self.token_head.parameters()]

    def losses(self, step, ids, attention, segment, targets):
        import torch.nn.functional as F

        own = pair = None
        if targets is None or step % DENOISE_EVERY == 0:
            pad = self.tokenizer.pad_token_id
            inputs, labels = zip(*(corrupt_spans(row[row != pad].tolist(), self.special, self.tokenizer.mask_token_id,
                                                 self.tokenizer.eos_token_id, self.rng) for row in ids))
            inputs, corrupted_attention = padded(inputs, pad)
            labels, _ = padded(labels, -100)
            own = self.model(input_ids=inputs, attention_mask=corrupted_attention, labels=labels).loss
        if targets is not None:
            targets, shared = targets
            output = self.classifier(input_ids=ids, attention_mask=attention, output_hidden_states=True)
            pair = F.mse_loss(output.logits.squeeze(-1), targets)
            if TOKEN_WEIGHT:
                known = shared >= 0
                pair = pair + TOKEN_WEIGHT * F.binary_cross_entropy_with_logits(
                    self.token_head(output.encoder_hidden_states[1][known]).squeeze(-1), shared[known].float())
        return own, pair


def pretrain(model, architecture: str, tokenizer, encoded: Corpus, *, max_steps: int, max_seconds: float,
             max_length: int = 64, batch_size: int = 32, seed: int = 42) -> Pretraining:
    """Train `model` (a RobertaForMaskedLM or a T5ForConditionalGeneration) in place."""
    import torch

    torch.manual_seed(seed)
    objectives = (RobertaObjectives if architecture == "roberta" else T5Objectives)(model, tokenizer, seed)
    model.train()
    parameters = objectives.parameters()
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
    rows = encoded.pairs or encoded.texts
    own_losses, pair_losses, started, step = [], [], time.monotonic(), 0
    while step < max_steps and time.monotonic() - started < max_seconds:
        start = (step * batch_size) % max(1, len(rows) - batch_size + 1)
        chosen = rows[start:start + batch_size]
        batch = pair_batch(chosen, tokenizer, max_length, objectives.with_types) if encoded.pairs \
            else text_batch(chosen, tokenizer, max_length)
        own, pair = objectives.losses(step, *batch)
        loss = sum(part for part in (own, None if pair is None else OVERLAP_WEIGHT * pair) if part is not None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        for value, record in ((own, own_losses), (pair, pair_losses)):
            if value is not None and math.isfinite(value.item()):
                record.append(value.item())
        step += 1
    model.eval()

    def mean(values):
        return sum(values) / len(values) if values else float("nan")

    return Pretraining(step, time.monotonic() - started, mean(own_losses[:20]), mean(own_losses[-20:]),
                       mean(pair_losses[:20]) if encoded.pairs else None,
                       mean(pair_losses[-20:]) if encoded.pairs else None)
