"""Checkpoint retention. Every experiment keeps its best checkpoint (3 GB for CodeT5-large), and a
nightly sweep adds a run's worth each night: nothing else ever removes them.

prune_checkpoints keeps the newest keep_runs successful runs of each DAG (and any run since) and
removes the weights of the best checkpoints of older, ended runs, in the artifact store and on this
host, except one that a kept run's row still points at (a reused result). The checkpoint folder
keeps everything else: the per-row predictions the reports' paired tests read, the config and the
tokenizer. Rows, learning curves, exports and reports stay; each removal is recorded in
checkpoint_removals, so SQL and `export` can say the weights are gone. A run still marked running
is never touched. Other hosts' working copies go when the command runs there: it removes the local
weights of every recorded removal it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from training.artifacts import MANIFEST, ArtifactStore
from training.results.connection import connect

WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth")  # the model's (and any optimizer's) tensors

# A run's age: how many successful runs of its DAG started since it did (itself included). A failed
# night does not push the last good run's weights out: runs from the keep-th newest success on stay.
RANKED = """WITH ranked AS (
    SELECT dag_id, run_id, status, count(*) FILTER (WHERE status = 'success') OVER (
        PARTITION BY dag_id ORDER BY started_at DESC, sweep_run_id DESC ROWS UNBOUNDED PRECEDING) AS age
    FROM sweep_runs)"""

CANDIDATES = sa.text(RANKED + """
SELECT e.experiment_id, e.dag_id, e.run_id, e.model_id, e.checkpoint_path, e.checkpoint_url
FROM experiments e JOIN ranked r USING (dag_id, run_id)
WHERE r.age > :keep AND r.status <> 'running' AND e.checkpoint_path IS NOT NULL
  AND (CAST(:dag_id AS text) IS NULL OR e.dag_id = :dag_id)
  AND NOT EXISTS (SELECT 1 FROM checkpoint_removals c WHERE c.experiment_id = e.experiment_id)
  AND NOT EXISTS (
      SELECT 1 FROM experiments k JOIN ranked kr USING (dag_id, run_id)
      WHERE (kr.age <= :keep OR kr.status = 'running')
        AND (k.checkpoint_path = e.checkpoint_path OR k.checkpoint_url = e.checkpoint_url))
ORDER BY e.dag_id, e.run_id, e.experiment_id""")

RECORD = sa.text("""INSERT INTO checkpoint_removals (experiment_id, checkpoint_path, checkpoint_url, bytes, keep_runs)
VALUES (:experiment_id, :checkpoint_path, :checkpoint_url, :bytes, :keep) ON CONFLICT (experiment_id) DO NOTHING""")

REMOVED = sa.text("SELECT DISTINCT checkpoint_path FROM checkpoint_removals")


@dataclass(frozen=True)
class Removal:
    experiment_id: int
    dag_id: str
    run_id: str
    model_id: str
    checkpoint_path: str
    checkpoint_url: str | None
    bytes: int | None  # what the files held, where this host or the store can tell


@dataclass(frozen=True)
class Pruned:
    removals: list[Removal]
    local_folders: list[Path]  # this host's copies removed (also of removals recorded elsewhere)

    @property
    def bytes(self) -> int:
        return sum({r.checkpoint_path: r.bytes or 0 for r in self.removals}.values())


def is_weights(name: str) -> bool:
    return any(Path(name).match(pattern) for pattern in WEIGHTS)


def local_weights(folder: Path) -> list[Path]:
    return [f for f in folder.iterdir() if f.is_file() and is_weights(f.name)] if folder.is_dir() else []


def weight_bytes(store: ArtifactStore, path: str, url: str | None) -> int | None:
    """What the weights hold: from this host's copy, else from the store's manifest."""
    files = local_weights(Path(path))
    if files:
        return sum(f.stat().st_size for f in files)
    listed = store.manifest(url) if url and store.shared else None
    return sum(size for name, size in listed.items() if is_weights(name)) if listed is not None else None


def remove_from_store(store: ArtifactStore, url: str, path: str) -> None:
    """The weights of a folder in the store; its manifest first, so the folder stops counting as whole
    (a host never brings back a checkpoint without its weights). A folder the store never got whole
    has no manifest: the names of this host's weight files stand in for it."""
    listed = store.manifest(url)
    names = list(listed) if listed is not None else [f.name for f in local_weights(Path(path))]
    store.remove(f"{url}/{MANIFEST}")
    for name in names:
        if is_weights(name):
            store.remove(f"{url}/{name}")


def prune_checkpoints(database_url: str, store: ArtifactStore, keep_runs: int, dry_run: bool = False,
                      dag_id: str | None = None) -> Pruned:
    """Remove the weights retention lets go (see the module's text), of every DAG or of one; with
    dry_run, only say which."""
    if keep_runs < 1:
        raise ValueError(f"keep_runs must be at least 1 (got {keep_runs}): the newest run's checkpoints always stay")
    with connect(database_url) as connection:
        rows = connection.execute(CANDIDATES, {"keep": keep_runs, "dag_id": dag_id}).mappings().all()
    removals = [Removal(**row, bytes=weight_bytes(store, row["checkpoint_path"], row["checkpoint_url"]))
                for row in rows]
    if dry_run:
        return Pruned(removals, [])
    for removal in removals:
        # The store copy first: once it is gone the row is recorded, then this host's copy follows.
        if removal.checkpoint_url and store.shared:
            remove_from_store(store, removal.checkpoint_url, removal.checkpoint_path)
        with connect(database_url, write=True) as connection:
            connection.execute(RECORD, {**vars(removal), "keep": keep_runs})
    return Pruned(removals, remove_local_copies(database_url))


def prune_here(database_url: str, keep_runs: int, dag_id: str | None = None, dry_run: bool = False,
               log=print) -> int:
    """prune_checkpoints with this process's artifact store (from the environment), each removal
    logged; what the CLI and the DAG's task run. Returns how many checkpoints went (or would)."""
    from training.settings import Storage

    pruned = prune_checkpoints(database_url, ArtifactStore.of(Storage.from_environment()), keep_runs, dry_run, dag_id)
    for line in describe(pruned, keep_runs, dry_run):
        log(line)
    return len(pruned.removals)


def removed_at(database_url: str, experiment_ids: list[int]) -> dict:
    """When each of these experiments' checkpoint weights were removed, for those that were."""
    with connect(database_url) as connection:
        return dict(connection.execute(sa.text(
            "SELECT experiment_id, removed_at FROM checkpoint_removals WHERE experiment_id = ANY(:ids)"),
            {"ids": experiment_ids}).all())


def remove_local_copies(database_url: str) -> list[Path]:
    """This host's weights of every recorded removal, wherever it was decided: the folders emptied."""
    with connect(database_url) as connection:
        paths = connection.execute(REMOVED).scalars().all()
    removed = []
    for path in map(Path, paths):
        files = local_weights(path)
        for file in files:
            file.unlink()
        if files:
            removed.append(path)
    return removed


def describe(pruned: Pruned, keep_runs: int, dry_run: bool) -> list[str]:
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} the weights of {removal.model_id}'s checkpoint of {removal.dag_id} / {removal.run_id} "
             f"({gigabytes(removal.bytes)}): {removal.checkpoint_url or removal.checkpoint_path}"
             for removal in pruned.removals]
    lines += [f"removed this host's weights in {folder} (recorded as removed)" for folder in pruned.local_folders
              if str(folder) not in {r.checkpoint_path for r in pruned.removals}]
    lines.append(f"{verb} the weights of {len(pruned.removals)} checkpoints, {gigabytes(pruned.bytes)}; each "
                 f"DAG's newest {keep_runs} successful runs (and runs since), running runs and checkpoints a kept "
                 "run reuses stay, and so do every run's predictions and reports")
    return lines


def gigabytes(count: int | None) -> str:
    if count is None:
        return "size unknown"
    return f"{count / 1e9:.2f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"

