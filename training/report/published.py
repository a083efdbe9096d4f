"""Where the report server and the run notes find the rendered reports: in the artifact store
(training/artifacts.py), so the api-server needs no volume shared with the workers. Without a
store they are read from the local reports folder, as the report task wrote them there."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from training.artifacts import ArtifactStore
from training.settings import Storage, inside

REPORT_NAMES = ("report.html", "report.md", "summary.json")


def publish(storage: Storage, report_dir: Path) -> str:
    """Send a rendered report's folder to the store (a no-op without one); its URL."""
    return ArtifactStore.of(storage).put_folder(report_dir)


def report_file(storage: Storage, dag_id: str, run_id: str, name: str) -> bytes | None:
    """One file of a run's report, or None where there is none. Names from a fixed list, folders
    through safe_name; locally, only a regular file whose resolved path stays inside the folder."""
    if name not in REPORT_NAMES:
        return None
    store, local = ArtifactStore.of(storage), storage.report_dir(dag_id, run_id) / name
    if store.shared:
        try:
            return store.read_bytes(store.url_of(local))
        except FileNotFoundError:
            return None
    path = inside(storage.reports_dir, local)
    return path.read_bytes() if path is not None and path.is_file() else None


def published_runs(storage: Storage) -> list[tuple[str, str, dict]]:
    """(DAG folder, run folder, its summary.json or {}) of every run with a report.html."""
    store, found = ArtifactStore.of(storage), []
    if store.shared:
        root = store.url_of(Path(storage.reports_dir))
        for dag_folder in store.folders(root):
            for run_folder in store.folders(f"{root}/{dag_folder}"):
                folder = f"{root}/{dag_folder}/{run_folder}"
                if store.manifest(folder) is not None:  # whole: report.html and its summary are there
                    summary = _summary(lambda folder=folder: store.read_bytes(f"{folder}/summary.json"))
                    found.append((dag_folder, run_folder, summary))
        return found
    root = Path(storage.reports_dir)
    for report in sorted(root.glob("*/*/report.html")):
        if inside(root, report) and report.is_file() and not report.parent.parent.is_symlink():
            found.append((report.parent.parent.name, report.parent.name,
                          _summary(lambda report=report: (report.parent / "summary.json").read_bytes())
                          or {"rendered_at": datetime.fromtimestamp(report.stat().st_mtime, UTC).isoformat(
                              timespec="seconds")}))
    return found


def _summary(read) -> dict:
    try:
        return json.loads(read())
    except (OSError, ValueError):
        return {}

