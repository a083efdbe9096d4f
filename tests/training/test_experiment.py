"""One experiment through the real CLI entry point (`python -m training run-experiment`), on
stand-in models: periodic evaluation, early stopping, best checkpoint, test F1, DB record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.training.helpers import run_cli, spec_for


@pytest.mark.parametrize("model_id", ["microsoft/codebert-base", "Salesforce/codet5-small"])
def test_experiment_trains_selects_best_and_records(tmp_path, model_id, dataset_dir, model_root, fresh_database):
    spec = spec_for(model_id, dataset_dir)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                     "SWEEP_DATABASE_URL": fresh_database})
    assert code == 0, output
    assert result["is_stand_in"] and result["model_source"] == str(model_root / model_id)
    assert result["stop_reason"] in ("completed", "early_stopped")
    assert result["steps_run"] <= 8  # the tiny budget's step cap
    assert len(result["eval_points"]) >= 2  # evaluated periodically, every 2 steps
    assert [p["step"] for p in result["eval_points"]] == list(range(2, result["steps_run"] + 1, 2))
    best = max(result["eval_points"], key=lambda p: p["f1"])
    assert result["validation_f1"] == pytest.approx(best["f1"])  # the best checkpoint was reloaded
    assert 0.0 <= result["test_f1"] <= 1.0 and result["gpu_hours"] == 0.0 and result["precision"] == "fp32"
    assert result["test_f1_ci_low"] <= result["test_f1"] <= result["test_f1_ci_high"]
    # the tiny budget caps validation at 32 rows; test is never capped by it: all 40 rows
    assert (result["train_rows"], result["validation_rows"], result["test_rows"]) == (64, 32, 40)
    assert result["latency_batch1_ms"] > 0 and result["throughput_batch32_per_second"] > 0
    assert result["parameter_count"] > 0 and result["model_size_bytes"] > 0
    checkpoint = Path(result["checkpoint_path"])
    assert (checkpoint / "config.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert not list(checkpoint.parent.glob("checkpoint-*"))  # only the best survives the run
    with sa.create_engine(fresh_database).connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM experiments")).mappings().one()
    assert (row["model_id"], row["experiment_key"], row["test_f1"]) == (model_id, result["experiment_key"],
                                                                        pytest.approx(result["test_f1"]))
    assert (row["seed"], row["predictions_path"]) == (spec.seed, result["predictions_path"])
    assert_predictions_kept(result, dataset_dir, checkpoint)


def assert_predictions_kept(result: dict, dataset_dir: Path, checkpoint: Path) -> None:
    """Every test row's prediction beside the best checkpoint, in the test file's order, and the
    recorded interval recomputed from that file alone."""
    import pyarrow.parquet as pq

    from training.results.predictions import recomputed_interval

    path = Path(result["predictions_path"])
    assert path.parent == checkpoint and path.name == "test_predictions.parquet"
    table = pq.read_table(path).to_pydict()
    test_rows = [json.loads(line) for line in (dataset_dir / "test.jsonl").read_text().splitlines()]
    assert table["row_id"] == list(range(len(test_rows)))
    assert table["label"] == [row["label"] for row in test_rows]
    assert all(0.0 <= p <= 1.0 for p in table["positive_probability"])
    assert table["predicted_label"] == [int(p >= 0.5) for p in table["positive_probability"]]
    assert recomputed_interval(path) == (result["test_f1_ci_low"], result["test_f1_ci_high"])
    assert_validation_predictions_kept(result, dataset_dir, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}


def assert_validation_predictions_kept(result: dict, dataset_dir: Path, checkpoint: Path) -> None:
    """The validation rows the run kept (a seeded sample, in file order), each with its prediction:
    validation F1 and its interval, where the choice is made, recomputed from the file alone."""
    import pyarrow.parquet as pq
    from sklearn.metrics import f1_score

    from training.results.predictions import recomputed_interval

    path = Path(result["validation_predictions_path"])
    assert path.parent == checkpoint and path.name == "validation_predictions.parquet"
    table = pq.read_table(path).to_pydict()
    rows = [json.loads(line) for line in (dataset_dir / "validation.jsonl").read_text().splitlines()]
    assert len(table["row_id"]) == result["validation_rows"] and table["row_id"] == sorted(set(table["row_id"]))
    assert table["label"] == [rows[i]["label"] for i in table["row_id"]]
    assert f1_score(table["label"], table["predicted_label"]) == pytest.approx(result["validation_f1"], abs=1e-12)
    assert recomputed_interval(path) == (result["validation_f1_ci_low"], result["validation_f1_ci_high"])
    assert result["validation_f1_ci_low"] <= result["validation_f1"] <= result["validation_f1_ci_high"]


def test_early_stopping_stops_a_run_that_stops_improving(tmp_path, dataset_dir, model_root):
    # A learning rate this small cannot move F1, so two evaluations without gain end the run.
    spec = spec_for("microsoft/codebert-base", dataset_dir, budget="demo", learning_rate=1e-12, batch_size=4)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    assert result["stop_reason"] == "early_stopped"
    assert len(result["eval_points"]) == 3  # the first sets the best, two more without gain
    assert result["steps_run"] < result["steps_planned"]


def test_pairs_of_snippets_train_too(tmp_path, dataset_dir, model_root):
    pair_dir = tmp_path / "pairs"
    pair_dir.mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (dataset_dir / f"{split}.jsonl").read_text().splitlines()]
        pairs = [{"func1": a["code"], "func2": b["code"], "label": a["label"] == b["label"]}
                 for a, b in zip(rows, rows[1:])]
        (pair_dir / f"{split}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    spec = spec_for("Salesforce/codet5-small", pair_dir)
    assert spec.dataset.text_columns == ("func1", "func2")  # the plan's clone-detection columns
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    assert result["validation_f1"] is not None


def test_bad_dataset_fails_with_a_named_error_and_a_failed_record(tmp_path, model_root, fresh_database):
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "validation", "test"):
        (bad / f"{split}.jsonl").write_text('{"text": "x = 1", "label": 1}\n')
    (bad / "dataset.json").write_text('{"text_columns": ["code"], "label_column": "label"}')
    spec = spec_for("microsoft/codebert-base", bad)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root),
                                                     "SWEEP_DATABASE_URL": fresh_database})
    assert code == 2  # not 1: nothing a retry could change
    assert result["stop_reason"] == "invalid_data" and "'loss'" not in output  # no training step ran
    assert "column 'code': no such column" in result["error"] and str(bad) in result["error"]
    assert not (Path(result["checkpoint_path"] or tmp_path / "none")).exists()
    with sa.create_engine(fresh_database).connect() as connection:
        row = connection.execute(sa.text("SELECT stop_reason, error FROM experiments")).one()
    assert row.stop_reason == "invalid_data" and "no such column" in row.error


def test_string_labels_score_the_named_positive_class(tmp_path, dataset_dir, model_root):
    """Labels "buggy"/"ok" with positive_label "buggy": the F1 recorded is that of "buggy", as
    scikit-learn computes it by hand from the saved checkpoint's own predictions."""
    import torch
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "strings"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (dataset_dir / f"{split}.jsonl").read_text().splitlines()]
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"code": r["code"], "label": "buggy" if r["label"] == 1 else "ok"}) + "\n" for r in rows))
    (folder / "dataset.json").write_text(json.dumps({"text_columns": ["code"], "positive_label": "buggy"}))
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", folder, budget="demo", learning_rate=5e-4),
                               max_steps=12)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    assert (result["positive_label"], result["class_count"]) == ("buggy", 2)
    checkpoint = result["checkpoint_path"]
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    assert model.config.id2label == {0: "ok", 1: "buggy"}  # the checkpoint says what each output means
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    test = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    predicted = []
    for row in test:  # one at a time: no padding, so nothing but the text decides
        inputs = tokenizer(row["code"], truncation=True, max_length=result["max_length"], return_tensors="pt")
        with torch.no_grad():
            predicted.append(model.config.id2label[int(model(**inputs).logits.argmax(-1))])
    expected = f1_score([row["label"] for row in test], predicted, pos_label="buggy")
    assert result["test_f1"] == pytest.approx(expected, abs=1e-6)


def test_reuse_copies_an_earlier_success_instead_of_training(tmp_path, dataset_dir, model_root, fresh_database):
    env = {"SWEEP_MODEL_ROOT": str(model_root), "SWEEP_DATABASE_URL": fresh_database}
    first_code, first, output = run_cli(tmp_path, spec_for("microsoft/codebert-base", dataset_dir), env)
    assert first_code == 0, output
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir, run_id="run-2"), reuse_results=True)
    code, result, output = run_cli(tmp_path, spec, env)
    assert code == 0, output
    assert "nothing to train" in output and "'loss'" not in output
    assert result["reused_from_run_id"] == "run-1" and result["experiment_key"] == first["experiment_key"]
    assert (result["test_f1"], result["gpu_hours"]) == (pytest.approx(first["test_f1"]), 0.0)
    with sa.create_engine(fresh_database).connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT e.run_id, e.reused_from_run_id, count(p.step) AS points FROM experiments e "
            "LEFT JOIN evaluation_points p USING (experiment_id) GROUP BY 1, 2 ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [("run-1", None, len(first["eval_points"])),
                                        ("run-2", "run-1", len(first["eval_points"]))]


def test_a_budget_that_caps_test_records_how_many_rows_it_kept(tmp_path, dataset_dir, model_root):
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", dataset_dir), max_test_samples=10, max_steps=2)
    assert "max_test_samples" in spec.settings_for_key()  # a capped test is another experiment
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    assert result["test_rows"] == 10 and result["validation_rows"] == 32
    # the kept rows are a sample in file order: the predictions name them by their place in the file
    import pyarrow.parquet as pq

    from training.results.predictions import recomputed_interval

    row_ids = pq.read_table(result["predictions_path"]).column("row_id").to_pylist()
    assert len(row_ids) == 10 and row_ids == sorted(set(row_ids)) and max(row_ids) < 40
    assert recomputed_interval(result["predictions_path"]) == (result["test_f1_ci_low"], result["test_f1_ci_high"])


def test_held_out_rows_that_repeat_training_rows_are_counted_in_the_result(tmp_path, dataset_dir, model_root):
    """A dataset with training rows planted in validation and test: the result says how many."""
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    rows = {split: (dataset_dir / f"{split}.jsonl").read_text().splitlines()
            for split in ("train", "validation", "test")}
    planted = [json.dumps({**json.loads(line), "code": json.loads(line)["code"] + "\n\n  "})
               for line in rows["train"][:3]]  # whitespace changed only
    (leaky / "dataset.json").write_text((dataset_dir / "dataset.json").read_text())
    (leaky / "train.jsonl").write_text("\n".join(rows["train"]) + "\n")
    (leaky / "validation.jsonl").write_text("\n".join(planted[:1] + rows["validation"]) + "\n")
    (leaky / "test.jsonl").write_text("\n".join(planted + rows["test"]) + "\n")
    # every row: the counts are against the training rows a run really uses
    spec = dataclasses.replace(spec_for("microsoft/codebert-base", leaky), max_train_samples=None,
                               max_eval_samples=None, max_steps=2)
    code, result, output = run_cli(tmp_path, spec, {"SWEEP_MODEL_ROOT": str(model_root)})
    assert code == 0, output
    def normalised(line):
        return " ".join(json.loads(line)["code"].split())

    train_codes = {normalised(line) for line in rows["train"]}
    held_out = {"validation": planted[:1] + rows["validation"], "test": planted + rows["test"]}
    expected = {split: sum(normalised(line) in train_codes for line in lines) for split, lines in held_out.items()}
    assert expected["validation"] >= 1 and expected["test"] >= 3
    assert result["validation_duplicates_of_train"] == expected["validation"]
    assert result["test_duplicates_of_train"] == expected["test"]
    assert result["test_rows_sharing_train_text"] == result["test_duplicates_of_train"]  # one text column
