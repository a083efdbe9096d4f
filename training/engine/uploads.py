"""Sending an experiment's artifacts to the store without stalling training, and bringing them back
on a host that has nothing local.

A save is snapshotted at once into the experiment's outbox (hard links: instant, and immune to the
checkpoint rotation that follows), and one background thread uploads the outbox in order, retrying
while the store is down. What is still in the outbox when the experiment ends is named on its row
(artifacts_missing) and stays on disk: the next attempt on this host, or
`python -m training db sync`, sends it. With a local store (the default) nothing is copied."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from training.artifacts import ArtifactStore, StoreError
from training.engine.checkpoints import TRAINER_STATE_FILE, checkpoint_step, checkpoints, is_full

OUTBOX = ".outbox"  # inside the experiment folder: snapshots waiting for the store
RETRY_SECONDS = (1, 2, 5, 10, 20, 30)
# Files of an experiment that a retry elsewhere needs, sent after each save and at the end.
LEDGER_FILES = ("attempts.json", "trained.json")


def snapshot(source: Path, target: Path) -> None:
    """A copy that costs no time: hard links where the file system allows, else a copy."""
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copyfile(source, target)  # small files (the ledger) change in place: copied, not linked
        return

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, copy_function=link)


class Uploads:
    """The outbox of one experiment folder and the thread that empties it into the store."""

    def __init__(self, store: ArtifactStore, output_dir: Path, say=print):
        self.store, self.output_dir, self.say = store, output_dir, say
        self.outbox = output_dir / OUTBOX
        self.pending: deque[str] = deque(sorted(p.name for p in self.outbox.iterdir()) if self.outbox.is_dir() else [])
        self.lock = threading.Condition()
        self.closing = False
        self.seconds_blocked = 0.0  # time the training thread spent snapshotting
        self.thread = None
        if store.shared:
            if self.pending:
                self.say(f"{len(self.pending)} artifact(s) from an earlier attempt wait for the store: sending them")
            self.thread = threading.Thread(target=self._run, name="artifact-uploads", daemon=True)
            self.thread.start()

    def send(self, *paths: Path) -> None:
        """Queue files or folders of the experiment folder for the store, in this order."""
        if not self.store.shared:
            return
        started = time.monotonic()
        with self.lock:
            for path in paths:
                if not path.exists():
                    continue
                snapshot(path, self.outbox / path.name)
                if path.name in self.pending:
                    self.pending.remove(path.name)
                self.pending.append(path.name)
            self.lock.notify()
        self.seconds_blocked += time.monotonic() - started

    def _upload(self, name: str) -> None:
        item = self.outbox / name
        target = self.store.url_of(self.output_dir / name)
        if item.is_dir():
            self.store.put_folder(item, target)
            if name.startswith("checkpoint-"):
                self._prune_store()
        else:
            self.store.put_file(item, target)

    def _prune_store(self) -> None:
        """Checkpoint folders the working copy has rotated away are removed from the store too."""
        keep = {folder.name for folder in checkpoints(self.output_dir)} | set(self.pending)
        root = self.store.url_of(self.output_dir)
        for name in self.store.folders(root):
            if name.startswith("checkpoint-") and name not in keep:
                self.store.remove(f"{root}/{name}")

    def _run(self) -> None:
        failures = 0
        while True:
            with self.lock:
                while not self.pending and not self.closing:
                    self.lock.wait()
                if not self.pending:
                    return
                name = self.pending[0]
            try:
                if not (name.startswith("checkpoint-") and not (self.output_dir / name).is_dir()):
                    self._upload(name)  # (a checkpoint rotated away meanwhile is not needed in the store either)
            except (StoreError, OSError) as error:
                failures += 1
                delay = RETRY_SECONDS[min(failures - 1, len(RETRY_SECONDS) - 1)]
                if failures in (1, 5) or failures % 20 == 0:
                    self.say(f"could not send {name} to the artifact store ({error}); retrying in {delay} s, "
                             "training goes on")
                with self.lock:
                    self.lock.wait(delay)
                continue
            if failures:
                self.say(f"the artifact store answers again: sent {name}")
            failures = 0
            with self.lock:
                if self.pending and self.pending[0] == name:
                    self.pending.popleft()
                    item = self.outbox / name
                    shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
                self.lock.notify_all()

    def close(self, wait_seconds: float) -> list[str]:
        """Wait up to wait_seconds for the outbox to empty; return what is still in it (kept on disk)."""
        if self.thread is None:
            return []
        deadline = time.monotonic() + wait_seconds
        with self.lock:
            while self.pending and time.monotonic() < deadline:
                self.lock.notify_all()
                self.lock.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
            self.closing = True
            missing = list(self.pending)
            self.pending.clear()  # the thread stops; the outbox keeps them for the next attempt or a sync
            self.lock.notify_all()
        self.thread.join(timeout=5)
        if missing:
            self.say(f"the artifact store did not take {', '.join(missing)} in {wait_seconds:.0f} s: kept in "
                     f"{self.outbox}; the next attempt here, or `python -m training db sync`, sends them")
        return missing


def hydrate(store: ArtifactStore, output_dir: Path, say=print) -> int | None:
    """On a host with no usable local state for this experiment, bring back from the store what the
    attempts elsewhere left: the result or trained record, the ledger, the best model, and the newest
    whole full save with the best it names. Returns the step of the full save brought back."""
    if not store.shared or (output_dir / "result.json").is_file() or any(is_full(f) for f in checkpoints(output_dir)):
        return None
    root = store.url_of(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in ("result.json", *LEDGER_FILES, "training_args.json"):
        try:
            store.get_file(f"{root}/{name}", output_dir / name)
        except FileNotFoundError:
            pass
    if (output_dir / "result.json").is_file():
        say(f"this experiment finished on another host; its result came from {root}")
        return None
    if (output_dir / "trained.json").is_file():
        store.get_folder(f"{root}/best", output_dir / "best")
    fulls = sorted((name for name in store.folders(root) if name.startswith("checkpoint-")),
                   key=lambda name: checkpoint_step(Path(name)), reverse=True)
    for name in fulls:
        files = store.manifest(f"{root}/{name}")
        if files is None or "optimizer.pt" not in files:
            continue  # half uploaded, or a model-only save
        folder = store.get_folder(f"{root}/{name}", output_dir / name)
        state_file = folder / TRAINER_STATE_FILE
        state = json.loads(state_file.read_text())
        named = state.get("best_model_checkpoint")
        if named:  # a path on the host that saved it: the same folder here
            state["best_model_checkpoint"] = str(output_dir / Path(named).name)
            state_file.write_text(json.dumps(state, indent=2))
            if Path(named).name != name:
                store.get_folder(f"{root}/{Path(named).name}", output_dir / Path(named).name)
        say(f"resuming on this host from the store's full save {root}/{name}")
        return checkpoint_step(folder)
    return None


def send_outboxes(store: ArtifactStore, root: Path, wait_seconds: float = 60, say=print) -> dict[str, int]:
    """What experiments under root left for the store (it was down when they ended): sent now, and
    each result file that named it as missing is corrected, here and in the store, so that the
    database sync that follows records the row whole."""
    from training.results.files import write_json

    counts = {"sent": 0, "still missing": 0}
    for outbox in sorted(root.glob(f"**/{OUTBOX}")):
        folder = outbox.parent
        if not any(outbox.iterdir()):
            outbox.rmdir()
            continue
        if Uploads(store, folder, say).close(wait_seconds):
            counts["still missing"] += 1
            continue
        shutil.rmtree(outbox, ignore_errors=True)
        counts["sent"] += 1
        result = folder / "result.json"
        if result.is_file() and (record := json.loads(result.read_text())).get("artifacts_missing"):
            write_json(result, {**record, "artifacts_missing": None})
            store.put_file(result)
    return counts
