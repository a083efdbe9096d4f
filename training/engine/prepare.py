"""The prepare phase of an experiment, before any model loads: load and check the data, cap the
splits, compute the stable experiment key, and place the experiment's folder; and the identity
part of its result (what names it and what it trains)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from training.data import loading
from training.data.contract import leakage_counts
from training.data.loading import LoadedDataset
from training.engine.accounting import code_version
from training.engine.models import resolve_model_source, stand_in_info
from training.plan import DatasetSpec
from training.results.record import ExperimentResult
from training.spec import ExperimentSpec

UNKNOWN_FINGERPRINT = "unavailable"  # the key of a run whose data could not be read


@dataclass(frozen=True)
class Prepared:
    """What is known before any model loads."""

    spec: ExperimentSpec
    key: str
    output_dir: Path
    dataset: LoadedDataset  # checked against the contract, before any cap
    splits: object  # the capped raw splits (a datasets.DatasetDict), rows in file order
    row_ids: dict[str, list[int]]  # each capped split's rows as positions in its file
    identity: ExperimentResult

    @property
    def dataset_spec(self) -> DatasetSpec:
        return self.dataset.spec

    @property
    def fingerprint(self) -> str:
        return self.dataset.fingerprint

    @property
    def label_values(self) -> list:
        return self.dataset.labels.values


def experiment_key(spec: ExperimentSpec, dataset_fingerprint: str) -> str:
    """Stable across retries and reruns: model, hyperparameters, data and settings, no run ids."""
    material = json.dumps({"spec": spec.settings_for_key(), "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def identity(spec: ExperimentSpec, key: str, dataset: LoadedDataset | None) -> ExperimentResult:
    """What names an experiment and what it trains: the part of its result known before training
    (without a dataset when the data is what failed)."""
    import torch
    import transformers

    source = resolve_model_source(spec.model_id, spec.runtime().model_root)
    labels = dataset.labels if dataset else None
    return ExperimentResult(
        dag_id=spec.dag_id, run_id=spec.run_id, run_type=spec.run_type, experiment_key=key, tier=spec.tier,
        model_id=spec.model_id, model_source=source, is_stand_in=stand_in_info(source) is not None,
        **spec.hyperparameters.as_dict(), budget=spec.budget, seed=spec.seed, confirmation_of=spec.confirmation_of,
        max_steps=spec.max_steps, run_settings=spec.run_settings(),
        dataset_source=spec.dataset.source,
        dataset_fingerprint=dataset.fingerprint if dataset else None,
        positive_label=None if labels is None or labels.positive is None else str(labels.positive),
        class_count=len(labels.values) if labels else None, plan_version=spec.plan_version,
        code_version=code_version(), versions={"torch": torch.__version__, "transformers": transformers.__version__})


def cached_leakage_counts(spec: ExperimentSpec, dataset: LoadedDataset, splits, caps: dict) -> dict[str, int]:
    """The leakage counts of these rows, computed once per dataset and row selection: every
    experiment of a sweep (and every retry) asks the same question of the same rows, and on the full
    data hashing every text takes longer than a small model's training step."""
    material = json.dumps({"data": dataset.fingerprint, "caps": caps, "seed": spec.row_seed}, sort_keys=True)
    path = spec.runtime().leakage_dir() / f"{hashlib.sha256(material.encode()).hexdigest()[:20]}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if "test_rows_all_texts_in_train" in cached:  # not one written before that count existed
            return cached
    counts = leakage_counts(splits, dataset.spec.text_columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(counts))
    staging.replace(path)  # whole or absent, whichever experiment writes it first
    return counts


def prepare(spec: ExperimentSpec) -> Prepared:
    """Load and check the data (a DataError names every problem), and place the experiment."""
    from datasets import DatasetDict

    dataset = loading.load_dataset(spec.dataset)
    caps = {"train": spec.max_train_samples, "validation": spec.max_eval_samples,
            "test": spec.max_test_samples}  # test: every row unless a budget names max_test_samples
    row_ids = {split: loading.capped_rows(len(dataset.splits[split]), cap, spec.row_seed)
               for split, cap in caps.items()}
    # A copy: capping must not change the checked splits.
    splits = DatasetDict({split: dataset.splits[split] if len(ids) == len(dataset.splits[split])
                          else dataset.splits[split].select(ids) for split, ids in row_ids.items()})
    key = experiment_key(spec, dataset.fingerprint)
    facts = {f"{split}_rows": len(splits[split]) for split in caps}
    facts.update(cached_leakage_counts(spec, dataset, splits, caps))
    return Prepared(spec, key, spec.runtime().experiment_dir(spec.dag_id, spec.run_id, key), dataset, splits,
                    row_ids, dataclasses.replace(identity(spec, key, dataset), **facts))
