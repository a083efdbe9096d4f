"""What loading a checkpoint for classification says in the task log: one line for the new head,
a warning only for encoder weights that start random."""

from __future__ import annotations

from training.engine.models import loading_summary


def test_a_new_head_is_one_line_and_random_encoder_weights_are_a_warning():
    loaded = {"missing_keys": ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight"],
              "mismatched_keys": [], "unexpected_keys": ["lm_head.bias", "lm_head.dense.weight"]}
    lines = loading_summary("roberta", loaded, 2)
    assert lines == ["a new classification head for 2 labels (classifier.dense, classifier.out_proj): expected, "
                     "fine-tuning trains it",
                     "2 weight(s) of the checkpoint are not used by a classifier (e.g. lm_head.bias, "
                     "lm_head.dense.weight): expected for a pre-trained language model"]
    assert not any(line.startswith("warning") for line in lines)
    loaded = {"missing_keys": ["roberta.encoder.layer.0.attention.self.query.weight"],
              "mismatched_keys": [("classifier.out_proj.weight", (3, 8), (2, 8))], "unexpected_keys": []}
    head, encoder = loading_summary("roberta", loaded, 3)
    assert "classifier.out_proj" in head
    assert encoder.startswith("warning: 1 weight(s) of the encoder are not in the checkpoint and start random")
    assert loading_summary("roberta", {"missing_keys": [], "mismatched_keys": [], "unexpected_keys": []}, 2) == []
