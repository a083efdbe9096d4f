"""Export (issue 29): the chosen checkpoint as a Hugging Face model folder with a model card, and what
loads is what was measured: the folder, loaded with `transformers.pipeline` and with
AutoModelForSequenceClassification, reproduces the recorded per-row test predictions exactly, for a
pair task and a single-snippet task, a RoBERTa-family and a T5-family stand-in. A checkpoint that no
longer answers as recorded is refused, and nothing is published."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from safetensors.torch import load_file, save_file

from tests.training.helpers import run_cli, spec_for
from training.export.choose import ExportError
from training.export.package import export_run
from training.results.store import finish_sweep_run

CODEBERT, CODET5 = "microsoft/codebert-base", "Salesforce/codet5-small"


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    from training.offline.pairs import generate

    folder = tmp_path_factory.mktemp("data") / "stdlib-clones"
    generate(folder, max_pairs=400)
    return folder


def trained(tmp_path, model_id, data, model_root, url, run_id="run-1") -> dict:
    spec = spec_for(model_id, data, run_id=run_id)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                              "SWEEP_DATABASE_URL": url})
    assert code == 0, output
    finish_sweep_run(url, spec.dag_id, run_id, "small", "manual")
    return result


def split_rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("model_id", "task"), [(CODEBERT, "pair"), (CODET5, "pair"), (CODEBERT, "single"),
                                                (CODET5, "single")])
def test_the_exported_folder_reproduces_the_recorded_predictions(tmp_path, model_id, task, pairs_dir, dataset_dir,
                                                                  model_root, fresh_database):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    data = pairs_dir if task == "pair" else dataset_dir
    result = trained(tmp_path, model_id, data, model_root, fresh_database)
    [exported] = export_run(fresh_database, "test_dag", None, to=str(tmp_path / "exports"))
    folder = Path(exported.destination)
    assert folder == tmp_path / "exports" / model_id.replace("/", "_")
    recorded = pq.read_table(result["predictions_path"]).to_pydict()
    rows = [split_rows(data)[i] for i in recorded["row_id"]]
    columns = ["func1", "func2"] if task == "pair" else ["code"]
    inputs = ([{"text": r["func1"], "text_pair": r["func2"]} for r in rows] if task == "pair"
              else [r[columns[0]] for r in rows])
    # as a user loads it: the tokenizer carries the training's max length, so truncation=True suffices
    answers = pipeline("text-classification", model=str(folder), device="cpu")(inputs, truncation=True)
    assert [a["label"] for a in answers] == [str(v) for v in recorded["predicted_label"]]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert tokenizer.model_max_length == result["max_length"]
    assert model.config.id2label == {0: "0", 1: "1"} and model.config.label2id == {"0": 0, "1": 1}
    import torch

    with torch.inference_mode():
        logits = [model(**tokenizer(*[r[c] for c in columns], truncation=True, return_tensors="pt")).logits[0]
                  for r in rows]
    assert [int(x.argmax()) for x in logits] == recorded["predicted_index"]
    assert [float(x.softmax(-1)[1]) for x in logits] == pytest.approx(recorded["positive_probability"], abs=1e-5)
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == model_id and card.data.pipeline_tag == "text-classification"
    f1 = card.data.eval_results[0]
    assert (f1.metric_type, f1.metric_value, f1.dataset_split) == ("f1", round(result["test_f1"], 4), "test")
    text = (folder / "README.md").read_text()
    assert "**Stand-in.**" in text and f"`{result['dataset_fingerprint']}`" in text
    assert f"it answered {len(rows)} recorded test rows exactly" in text
    assert (folder / "evaluation" / "test_predictions.parquet").is_file()
    assert json.loads((folder / "sweep.json").read_text())["experiment_key"] == result["experiment_key"]
    with sa.create_engine(fresh_database).connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM exports")).mappings().one()
    assert (row["destination"], row["verified_rows"]) == (str(folder), len(rows))
    assert row["cpu_latency_batch1_ms"] > 0 and row["cpu_throughput_batch32_per_second"] > 0 and row["machine"]


def test_a_checkpoint_that_no_longer_answers_as_recorded_is_not_exported(tmp_path, pairs_dir, model_root,
                                                                         fresh_database):
    result = trained(tmp_path, CODEBERT, pairs_dir, model_root, fresh_database)
    weights = Path(result["checkpoint_path"]) / "model.safetensors"
    tensors = load_file(weights)
    head = next(name for name in tensors if name.endswith("out_proj.bias"))
    tensors[head] = tensors[head] + tensors[head].new_tensor([50.0, -50.0])  # now it always answers class 0
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"answers \d+ of \d+ recorded test rows differently .*not exported"):
        export_run(fresh_database, "test_dag", "run-1", to=str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists()


def test_export_names_what_is_missing(fresh_database, tmp_path):
    with pytest.raises(ExportError, match="test_dag has no successful run"):
        export_run(fresh_database, "test_dag", None, to=str(tmp_path))


def test_export_to_the_artifact_store_from_a_host_without_the_checkpoint(tmp_path, pairs_dir, model_root,
                                                                         fresh_database, s3_store, monkeypatch):
    """Trained on one host with a store; exported from another that has nothing local: the checkpoint
    comes from the store, and the folder goes back to the store's exports/, whole."""
    import shutil

    from transformers import pipeline

    from training.artifacts import ArtifactStore

    spec = spec_for(CODEBERT, pairs_dir)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                     "SWEEP_DATABASE_URL": fresh_database, **s3_store})
    assert code == 0, output
    assert result["checkpoint_url"].startswith("s3://")
    shutil.rmtree(Path(result["checkpoint_path"]).parent)  # another host: nothing of the run on disk
    for name, value in s3_store.items():
        monkeypatch.setenv(name, value)
    [exported] = export_run(fresh_database, "test_dag", "run-1")
    url = s3_store["SWEEP_ARTIFACTS_URL"].rstrip("/")
    assert exported.destination == f"{url}/exports/test_dag/run-1/microsoft_codebert-base"
    folder = ArtifactStore(url, "", "").get_folder(exported.destination, tmp_path / "fetched")
    assert folder is not None and (folder / "README.md").read_text() == exported.card
    recorded = pq.read_table(ArtifactStore(url, "", "").get_file(
        result["predictions_path"], tmp_path / "predictions.parquet")).to_pydict()
    rows = [split_rows(pairs_dir)[i] for i in recorded["row_id"]]
    answers = pipeline("text-classification", model=str(folder), device="cpu")(
        [{"text": r["func1"], "text_pair": r["func2"]} for r in rows], truncation=True)
    assert [a["label"] for a in answers] == [str(v) for v in recorded["predicted_label"]]
