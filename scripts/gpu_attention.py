"""`make gpu-bench`, T5's attention: does carrying the relative position bias into a fused kernel pay?

transformers 5 already hands T5's bias to the attention interface: with "sdpa" (how the engine
loads every model) it becomes SDPA's additive float mask, which rules out the flash kernel but not
the memory-efficient one; with "flex_attention" it is a score modification. Against "eager"
(matmul, add the bias, softmax), on the same weights and batch:

- logits: each implementation's bf16 logits against eager's bf16 logits, judged against bf16's own
  noise (eager bf16 against eager fp32): within tolerance when no further off than twice that;
- speed: training steps/s of each (scripts/gpu_bench.py's one_mode), and the ratio to eager.
The issue's rule: keep a fused path only if its logits are within tolerance and its step is at
least 1.2x eager's. An implementation that fails says why (its error), not a figure.
"""

from __future__ import annotations

import torch

IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")
SPEEDUP_TO_KEEP = 1.2


def padded_batch(batch: int, length: int, vocab: int, device: str) -> dict:
    """Random ids with one </s> a row, the first row half padding (so the mask matters too)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    ids[:, -1] = 2
    half = length // 2
    ids[0, half - 1], ids[0, half:], mask[0, half:] = 2, 0, 0
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def logits_of(model, implementation: str, inputs: dict, device: str, dtype) -> torch.Tensor:
    model.set_attn_implementation(implementation)
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        return model(**inputs).logits.float()


class LogitsCheck:
    """Each implementation's bf16 logits against eager's on one batch, judged against bf16's noise
    (eager bf16 against eager fp32, measured once here); `found` holds every figure."""

    def __init__(self, model, vocab: int, batch: int, length: int, device: str):
        self.model, self.device = model.to(device).eval(), device
        self.inputs = padded_batch(batch, length, vocab, device)
        reference = logits_of(model, "eager", self.inputs, device, None)
        self.eager = logits_of(model, "eager", self.inputs, device, torch.bfloat16)
        self.noise = float((self.eager - reference).abs().max())
        self.found = {"bf16_noise": self.noise, "logit_scale": float(reference.abs().max())}

    def compare(self, implementation: str) -> None:
        try:
            logits = logits_of(self.model, implementation, self.inputs, self.device, torch.bfloat16)
            difference = float((logits - self.eager).abs().max())
            self.found[implementation] = {"max_abs_difference": difference,
                                          "within_tolerance": difference <= 2 * self.noise + 1e-6}
        except Exception as error:  # a path that cannot run reports why
            self.found[implementation] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}


def attention_figures(model_id: str, args, device: str, precision: str, peak, folder, plain_row: dict) -> dict:
    """The logits check and the step time per implementation; plain_row is the sdpa run already
    timed. Eager is timed before FlexAttention is first tried, which runs last of all."""
    from gpu_bench import build_model, one_mode

    def timed(implementation: str) -> None:
        try:
            speeds[implementation] = one_mode(model_id, False, False, args, device, precision, peak,
                                              folder / implementation, attention=implementation)["steps_per_second"]
        except Exception as error:
            result.setdefault("errors", {})[implementation] = f"{type(error).__name__}: {str(error)[:300]}"

    torch.manual_seed(0)
    model, vocab = build_model(model_id, args.smoke)
    check = LogitsCheck(model, vocab, min(4 if args.smoke else plain_row["batch"], 8), args.length, device)
    check.compare("sdpa")
    result = {"model": model_id, "logits": check.found}
    speeds = {"sdpa": plain_row["steps_per_second"]}
    timed("eager")
    check.compare("flex_attention")
    del model, check
    if "error" not in result["logits"]["flex_attention"]:
        timed("flex_attention")
    result["steps_per_second"] = speeds
    if "eager" in speeds:
        result["speedup_over_eager"] = {name: value / speeds["eager"] for name, value in speeds.items()}
        result["keep"] = [name for name in IMPLEMENTATIONS[1:] if name in speeds
                          and result["logits"][name].get("within_tolerance")
                          and speeds[name] / speeds["eager"] >= SPEEDUP_TO_KEEP]
    return result
