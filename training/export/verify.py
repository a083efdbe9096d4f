"""What loads is what was measured: the exported folder, loaded as a user would
(`transformers.pipeline("text-classification")`), answers the recorded test rows exactly as the
predictions file says; and how fast it answers on this machine's CPU."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from training.export.choose import ExportError
from training.results.record import StoredExperiment

VERIFY_ROWS = 512  # the first rows of the test predictions file (all of them on a small split)


def dataset_spec(row: StoredExperiment):
    """The data the experiment was scored on: its recorded run settings' dataset (or, for a row from
    before they were recorded, the plan's columns on its dataset source)."""
    from training.plan import DatasetSpec, load_plan

    recorded = (row.run_settings or {}).get("dataset")
    if recorded:
        return DatasetSpec(recorded["source"], tuple(recorded["text_columns"]), recorded["label_column"],
                           recorded.get("positive_label"))
    plan = load_plan().dataset
    return DatasetSpec(row.dataset_source, plan.text_columns, plan.label_column, plan.positive_label)


def recorded_rows(row: StoredExperiment, limit: int = VERIFY_ROWS) -> tuple[list, list[str], list[str]]:
    """(pipeline inputs, recorded predicted labels, true labels) of the first `limit` test rows of
    the experiment's predictions file, the texts read back from its dataset by row position."""
    import pyarrow.parquet as pq

    from training.artifacts import open_artifact
    from training.data.loading import load_dataset

    if not row.predictions_path:
        raise ExportError(f"{row.model_id}: no test predictions were recorded, so the export cannot be checked")
    with open_artifact(row.predictions_path) as handle:
        table = pq.read_table(handle, columns=["row_id", "label", "predicted_label"]).slice(0, limit).to_pydict()
    loaded = load_dataset(dataset_spec(row))
    if loaded.fingerprint != row.dataset_fingerprint:
        raise ExportError(f"{row.model_id}: the dataset at {loaded.spec.source} is not the one the experiment was "
                          f"scored on (fingerprint {loaded.fingerprint}, recorded {row.dataset_fingerprint})")
    test, columns = loaded.splits["test"], loaded.spec.text_columns
    picked = test.select(table["row_id"])
    if len(columns) == 2:
        inputs = [{"text": a, "text_pair": b} for a, b in zip(picked[columns[0]], picked[columns[1]])]
    else:
        inputs = list(picked[columns[0]])
    return inputs, [str(v) for v in table["predicted_label"]], [str(v) for v in table["label"]]


def classifier(folder: Path):
    from transformers import pipeline

    return pipeline("text-classification", model=str(folder), tokenizer=str(folder), device="cpu")


def verify(folder: Path, row: StoredExperiment, inputs: list, expected: list[str]) -> int:
    """The number of rows reproduced; raises ExportError naming the rows that differ."""
    pipe = classifier(folder)
    answers = pipe(inputs, batch_size=1, truncation="longest_first", max_length=row.max_length)
    labels = [str(answer["label"]) for answer in answers]
    wrong = [i for i, (got, want) in enumerate(zip(labels, expected)) if got != want]
    if wrong:
        raise ExportError(f"{row.model_id}: the exported model answers {len(wrong)} of {len(expected)} recorded test "
                          f"rows differently from the experiment's predictions (first at row {wrong[0]}: "
                          f"{labels[wrong[0]]!r}, recorded {expected[wrong[0]]!r}); not exported")
    return len(labels)


def machine() -> str:
    """The exporting machine, named: host, CPU model, cores and torch's threads."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{socket.gethostname()}: {model}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def cpu_speed(folder: Path, row: StoredExperiment, inputs: list) -> dict[str, float]:
    """Median latency at batch 1 and rows per second at batch 32, on the CPU, over the same rows
    (training/engine/serving.py's measurement, on the exported folder)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from training.engine.serving import inference_speed

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).to("cpu")
    texts = [(i["text"], i["text_pair"]) if isinstance(i, dict) else (i,) for i in inputs]
    rows = [tokenizer(*text, truncation="longest_first", max_length=row.max_length) for text in texts]
    return inference_speed(model, rows, DataCollatorWithPadding(tokenizer, return_tensors="pt"))
