"""Export a run's chosen checkpoints: each as a Hugging Face model folder (weights, tokenizer with the
training's max length, config with id2label/label2id, README.md model card, sweep.json, the per-row
predictions under evaluation/), checked against the recorded predictions before it is published to a
local folder or the artifact store, and recorded in the `exports` table."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import sqlalchemy as sa

from training.export import verify
from training.export.choose import ExportError, NothingToExport, chosen_experiments, latest_successful_run
from training.results.connection import connect
from training.results.record import StoredExperiment
from training.settings import Storage, safe_name

CARD = "README.md"
PROVENANCE = "sweep.json"
EVALUATION = "evaluation"


@dataclass(frozen=True)
class Exported:
    model_id: str
    destination: str
    verified_rows: int
    machine: str
    latency_ms: float
    throughput: float
    card: str


def default_destination(storage: Storage, dag_id: str, run_id: str, model_id: str) -> str:
    """<store>/exports/<dag>/<run>/<model> with an artifact store, else $SWEEP_HOME/exports/..."""
    parts = f"exports/{safe_name(dag_id)}/{safe_name(run_id)}/{safe_name(model_id)}"
    return f"{storage.artifacts_url.rstrip('/')}/{parts}" if storage.artifacts_url else str(Path(storage.home) / parts)


SCRATCH = "sweep-export-"


def scratch_prefix() -> str:
    """This process's scratch folders: host and pid in the name, so a later export can tell those of
    a process that was killed (SIGKILL runs no cleanup) from those of one still at work."""
    return f"{SCRATCH}{socket.gethostname()}-{os.getpid()}-"


def clear_abandoned_scratch(root: Path | None = None) -> list[Path]:
    """Remove this host's export scratch folders whose process is gone; return them."""
    root = Path(root or tempfile.gettempdir())
    mine = f"{SCRATCH}{socket.gethostname()}-"
    removed = []
    for folder in root.glob(f"{mine}*"):
        pid = folder.name[len(mine):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except PermissionError:  # alive, someone else's
            pass
    return removed


def restore_interrupted(target: Path) -> None:
    """An export killed between its two renames left the earlier folder as <name>.old and none at
    <name>: put it back. An .old beside a complete folder is the one the swap replaced."""
    old = target.with_name(target.name + ".old")
    if old.exists() and not target.exists():
        old.replace(target)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)


def publish_local(folder: Path, target: Path) -> None:
    """Copy beside the target (<name>.partial), then swap: the earlier folder moves aside to
    <name>.old, the new one takes its name, the old one goes. A kill leaves either folder whole,
    under its name or, between the renames, as <name>.old (restore_interrupted puts it back)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(target)
    staging, old = target.with_name(target.name + ".partial"), target.with_name(target.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(folder, staging)
    if target.exists():
        target.replace(old)
    staging.replace(target)
    shutil.rmtree(old, ignore_errors=True)


def fetch_checkpoint(row: StoredExperiment, staging: Path) -> None:
    """The best checkpoint's folder, from its local path or the artifact store."""
    from training.artifacts import ArtifactStore

    local = Path(row.checkpoint_path) if row.checkpoint_path else None
    if local is not None and (local / "config.json").is_file():
        shutil.copytree(local, staging)
        return
    url = row.checkpoint_url
    if url and "://" in url:
        store = ArtifactStore(url, "", "")
        if store.get_folder(url, staging) is not None:
            return
    raise ExportError(f"{row.model_id}: its best checkpoint is neither at {row.checkpoint_path} nor whole at {url}")


def leakage_text(row: StoredExperiment) -> str:
    """The test split's leakage counts, in words ("" when there is none)."""
    counts = [(row.test_duplicates_of_train, "are exact duplicates of a training row"),
              (row.test_rows_all_texts_in_train, "have every text in training, if not as this pair (near-copies)"),
              (row.test_rows_sharing_train_text, "share at least one text with a training row")]
    if not row.test_rows or not any(count for count, _ in counts):
        return ""
    return ", ".join(f"{count} of {row.test_rows} test rows {what}" for count, what in counts if count is not None)


def card_text(row: StoredExperiment, grid_size: int, checked: int, machine: str, speed: dict, destination: str,
              labels: dict) -> str:
    templates = jinja2.Environment(loader=jinja2.PackageLoader("training.export", "templates"),
                                   undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    pair = len(verify.dataset_spec(row).text_columns) == 2
    return templates.get_template("card.md.j2").render(
        e=row, base_model=row.model_id, name=f"{row.model_id.split('/')[-1]}-{safe_name(row.dag_id)}",
        task="Code pair classification" if pair else "Code classification",
        dataset_is_hub="/" in row.dataset_source and not row.dataset_source.startswith(("/", ".")),
        dataset_name=row.dataset_source.rstrip("/").split("/")[-1], grid_size=grid_size, verified_rows=checked,
        metric=f"F1 is of the positive class {row.positive_label!r}." if row.positive_label is not None
        else f"F1 is macro-averaged over {row.class_count} classes.", leakage=leakage_text(row), machine=machine,
        latency_ms=speed["latency_batch1_ms"], throughput=speed["throughput_batch32_per_second"],
        folder_hint=destination, labels=", ".join(f"{k} = {v}" for k, v in labels.items()) or "see config.json",
        example='{"text": "def a(): ...", "text_pair": "def b(): ..."}' if pair else '"def a(): ..."',
        versions=", ".join(f"{k} {v}" for k, v in sorted((row.versions or {}).items())) or "versions not recorded")


def export_experiment(row: StoredExperiment, destination: str, grid_size: int) -> Exported:
    """Build the folder in a scratch space, check it, then publish it whole (a local folder by
    publish_local's swap; a store folder gets its manifest last)."""
    from transformers import AutoTokenizer

    from training.artifacts import ArtifactStore, open_artifact

    clear_abandoned_scratch()
    if "://" not in destination:
        restore_interrupted(Path(destination))
    with tempfile.TemporaryDirectory(prefix=scratch_prefix()) as scratch:
        folder = Path(scratch) / "model"
        fetch_checkpoint(row, folder)
        for stray in ("training_args.bin", "test_predictions.parquet", "validation_predictions.parquet"):
            (folder / stray).unlink(missing_ok=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.model_max_length = row.max_length  # truncation=True truncates as training did
        tokenizer.save_pretrained(folder)
        (folder / EVALUATION).mkdir()
        for path in (row.predictions_path, row.validation_predictions_path):
            if path:
                with open_artifact(path) as source, open(folder / EVALUATION / Path(path).name, "wb") as target:
                    shutil.copyfileobj(source, target)
        inputs, expected, _ = verify.recorded_rows(row)
        checked = verify.verify(folder, row, inputs, expected)
        machine = verify.machine()
        speed = verify.cpu_speed(folder, row, inputs)
        labels = json.loads((folder / "config.json").read_text()).get("id2label", {})
        card = card_text(row, grid_size, checked, machine, speed, destination, labels)
        (folder / CARD).write_text(card)
        (folder / PROVENANCE).write_text(json.dumps(row.to_dict(), indent=2, default=str))
        if "://" in destination:
            ArtifactStore(destination, "", "").put_folder(folder, destination)
        else:
            publish_local(folder, Path(destination))
    return Exported(row.model_id, destination, checked, machine, speed["latency_batch1_ms"],
                    speed["throughput_batch32_per_second"], card)


RECORD = sa.text(
    "INSERT INTO exports (experiment_id, dag_id, run_id, model_id, destination, card, verified_rows, machine, "
    "cpu_latency_batch1_ms, cpu_throughput_batch32_per_second) VALUES (:experiment_id, :dag_id, :run_id, "
    ":model_id, :destination, :card, :verified_rows, :machine, :latency, :throughput) "
    "ON CONFLICT (experiment_id, destination) DO UPDATE SET card = EXCLUDED.card, verified_rows = "
    "EXCLUDED.verified_rows, machine = EXCLUDED.machine, cpu_latency_batch1_ms = EXCLUDED.cpu_latency_batch1_ms, "
    "cpu_throughput_batch32_per_second = EXCLUDED.cpu_throughput_batch32_per_second, exported_at = now()")


def export_run(url: str, dag_id: str, run_id: str | None, models: list[str] | None = None,
               to: str | None = None, log=print) -> list[Exported]:
    """Export the chosen configuration of each model (or those named) of a run (None: the tier's
    latest successful run); `to`: a parent folder or store URL (default: default_destination)."""
    run_id = run_id or latest_successful_run(url, dag_id)
    storage = Storage.from_environment()
    done = []
    rows = chosen_experiments(url, dag_id, run_id, models)
    if not rows:
        raise NothingToExport(f"{dag_id} run {run_id} has no successful experiment with a kept checkpoint to export")
    from training.results.retention import removed_at

    removed = removed_at(url, [row.experiment_id for row in rows])
    if removed:
        raise ExportError("; ".join(f"{row.model_id}: its best checkpoint was removed by prune-checkpoints on "
                                    f"{removed[row.experiment_id]:%Y-%m-%d}" for row in rows
                                    if row.experiment_id in removed) + f" (run {run_id}); nothing exported")
    models_of_grid_runs = _grid(url, dag_id, run_id)
    grid = {r.model_id: models_of_grid_runs.count(r.model_id) for r in rows}
    for row in rows:
        destination = (f"{to.rstrip('/')}/{safe_name(row.model_id)}" if to
                       else default_destination(storage, dag_id, run_id, row.model_id))
        log(f"exporting {row.model_id} (lr {row.learning_rate:g}, batch {row.batch_size}, {row.num_epochs} epochs, "
            f"wd {row.weight_decay:g}; test F1 {row.test_f1:.3f}) to {destination} ...")
        exported = export_experiment(row, destination, grid[row.model_id])
        with connect(url, write=True) as connection:
            connection.execute(RECORD, {"experiment_id": row.experiment_id, "dag_id": dag_id, "run_id": run_id,
                                        "model_id": row.model_id, "destination": destination, "card": exported.card,
                                        "verified_rows": exported.verified_rows, "machine": exported.machine,
                                        "latency": exported.latency_ms, "throughput": exported.throughput})
        log(f"  {exported.verified_rows} recorded test rows reproduced; CPU {exported.latency_ms:.1f} ms at batch 1, "
            f"{exported.throughput:.0f} rows/s at batch 32 ({exported.machine})")
        done.append(exported)
    return done


def _grid(url: str, dag_id: str, run_id: str) -> list[str]:
    """The model of each grid run (seed reruns left out) of the run."""
    from training.results.store import run_experiments

    return [r.model_id for r in run_experiments(url, dag_id, run_id) if r.confirmation_of is None]


def run_exports(url: str, dag_id: str, run_id: str) -> list[dict]:
    """The run's recorded exports (for its report), the latest per model."""
    with connect(url) as connection:
        return [dict(r) for r in connection.execute(sa.text(
            "SELECT DISTINCT ON (model_id) model_id, destination, card, verified_rows, machine, "
            "cpu_latency_batch1_ms, cpu_throughput_batch32_per_second, exported_at FROM exports "
            "WHERE dag_id = :dag_id AND run_id = :run_id ORDER BY model_id, exported_at DESC"),
            {"dag_id": dag_id, "run_id": run_id}).mappings()]
