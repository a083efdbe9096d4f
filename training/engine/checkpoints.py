"""What each save writes and what stays on disk: a new best saves the model only, the full
resumable state is saved at a bounded interval and when the process is asked to stop, and a retry
resumes from the newest full save."""

from __future__ import annotations

import json
import shutil
import signal
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from transformers import TrainerCallback

# Written by a full save only (with the scheduler, scaler and RNG state); the Trainer writes
# trainer_state.json last, after it, in both kinds of save.
FULL_STATE_FILE = "optimizer.pt"
TRAINER_STATE_FILE = "trainer_state.json"
SET_ASIDE = "set_aside"  # beside the checkpoints: files that could not be read, kept for a person to look at


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoint folders, oldest first."""
    return sorted(output_dir.glob("checkpoint-*"), key=checkpoint_step)


def is_complete(folder: Path) -> bool:
    return (folder / TRAINER_STATE_FILE).is_file()


def is_full(folder: Path) -> bool:
    """Saved whole, with the optimizer, scheduler and RNG state a retry resumes from."""
    return is_complete(folder) and (folder / FULL_STATE_FILE).is_file()


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def unreadable_file(folder: Path) -> str | None:
    """The first file of a checkpoint that cannot load, with why; None when every file is whole.
    Cheap enough to run before every resume: a safetensors file's size must be what its header
    says, a torch file (a zip archive) must pass its CRC check, JSON must parse."""
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with open(path, "rb") as handle:
                    header_bytes = int.from_bytes(handle.read(8), "little")
                    header = json.loads(handle.read(header_bytes))
                ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
                expected = 8 + header_bytes + max(ends, default=0)
                if path.stat().st_size != expected:
                    return f"{path.name}: {path.stat().st_size} bytes, its header describes {expected}"
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad:
                    return f"{path.name}: {bad} fails its CRC check"
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as error:
            return f"{path.name}: {type(error).__name__}: {error}"
    return None


def set_aside(folder: Path, why: str) -> Path:
    """Move a folder that must not be used into set_aside/ beside it (never deleted: it is evidence)."""
    target = folder.parent / SET_ASIDE / f"{folder.name}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    target.parent.mkdir(exist_ok=True)
    folder.rename(target)
    print(f"set aside {folder.name} as {target}: {why}")
    return target


def last_full_checkpoint(output_dir: Path) -> str | None:
    """The newest full save that loads, the one a retry resumes from; a newer one that does not
    load (a truncated file) is set aside with a message, and the next older one is tried. Removed
    first: folders that a kill during a save left incomplete, and every folder newer than the
    resumed save (model-only bests of the lost steps: the state resumed from does not know them,
    and the steps are trained again). Older model-only folders stay: the resumed state may name
    one as its best."""
    resume = None
    for folder in reversed([folder for folder in checkpoints(output_dir) if is_full(folder)]):
        problem = unreadable_file(folder)
        if problem is None:
            resume = folder
            break
        set_aside(folder, f"it cannot be resumed from ({problem}); trying the next older full save")
    folders = checkpoints(output_dir)
    for folder in folders:
        if not is_complete(folder):
            print(f"removing {folder}: incomplete (the previous attempt was stopped while saving it)")
            shutil.rmtree(folder)
        elif resume is None or checkpoint_step(folder) > checkpoint_step(resume):
            print(f"removing {folder}: saved after the last full save, which the retry resumes from")
            shutil.rmtree(folder)
    return str(resume) if resume else None


class StopRequest:
    """SIGTERM while training (Airflow stopping the task: on_kill, a worker shutting down) becomes a
    request: the current step ends, the full state is saved, and the process exits without a
    result, so the retry resumes there. Installed for the training phase only; outside it SIGTERM
    ends the process as usual."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        print("SIGTERM: saving the full state at the end of this step, then stopping")
        self.requested = True


class CheckpointPolicy(TrainerCallback):
    """Decides what each save writes, so the disk written per run stays small:

    - An evaluation with a new best F1 saves the model only: all that selection
      (load_best_model_at_end) needs.
    - The full resumable state (model, optimizer, scheduler, RNG, trainer state) is saved at the
      end of the first step at least `full_every_seconds` after the attempt began or after the last
      full save, and at the end of the step in which SIGTERM arrived. With 0, every evaluation saves
      the full state (the Trainer's default).
    - An evaluation without a new best saves nothing.

    On disk stay the best, the newest full save and the best that save's state names (a resume
    from it must find it): at most three folders, two of them model only. Each save's size is
    counted into the attempt ledger."""

    def __init__(self, output_dir: Path, full_every_seconds: float, ledger, stop: StopRequest | None = None,
                 clock: Callable[[object], float] | None = None, uploads=None):
        self.output_dir, self.full_every, self.ledger, self.stop = output_dir, full_every_seconds, ledger, stop
        self.uploads = uploads  # engine/uploads.py Uploads: each save (and the ledger) to the artifact store
        self.clock = clock or (lambda state: time.monotonic())
        self.last_full = None
        self.pending = None  # "full" or "model": what the save about to happen writes
        self.training = True  # the best checkpoint's evaluations after training save nothing
        self.interrupted = False
        self.most_on_disk = 0
        for name in ("checkpoint_bytes", "full_saves", "model_saves"):
            ledger.current.setdefault(name, 0)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.last_full is None:  # the first step of this attempt (a resumed state is loaded by now)
            self.last_full = self.clock(state)

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_step_end(self, args, state, control, **kwargs):
        self.pending = None
        if self.stop is not None and self.stop.requested:
            control.should_save = control.should_training_stop = True
            self.interrupted, self.pending = True, "full"
        elif self.full_every == 0:
            self.pending = "full" if control.should_save else None
        elif self.clock(state) - self.last_full >= self.full_every:
            control.should_save, self.pending = True, "full"
        elif control.should_save and not control.should_evaluate:
            control.should_save = False  # the Trainer's save at the last step, unevaluated: nothing selection needs
        args.save_only_model = self.pending != "full"

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.training or self.pending == "full" or not control.should_save:
            return
        # Called before the Trainer updates state.best_metric, by the same rule (strictly greater).
        f1 = (metrics or {}).get("eval_f1")
        if f1 is not None and (state.best_metric is None or f1 > state.best_metric):
            self.pending, args.save_only_model = "model", True
        else:
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        folder = self.output_dir / f"checkpoint-{state.global_step}"
        kind = self.pending or ("model" if args.save_only_model else "full")
        current = self.ledger.current
        current["checkpoint_bytes"] += folder_bytes(folder) if folder.is_dir() else 0
        current[f"{kind}_saves"] += 1
        if kind == "full":
            self.last_full = self.clock(state)
        self.pending = None
        self.most_on_disk = max(self.most_on_disk, len(checkpoints(self.output_dir)))
        if self.uploads is not None and folder.is_dir():
            self.uploads.send(self.ledger.path, folder)  # the ledger first: a whole save in the store has it
        self.rotate(state)

    def rotate(self, state) -> None:
        """Remove every folder but the best, the newest full save and the best that save names."""
        keep, folders = set(), checkpoints(self.output_dir)
        if state.best_model_checkpoint:
            keep.add(Path(state.best_model_checkpoint).name)
        fulls = [folder for folder in folders if is_full(folder)]
        if fulls:
            keep.add(fulls[-1].name)
            named = json.loads((fulls[-1] / TRAINER_STATE_FILE).read_text()).get("best_model_checkpoint")
            if named:
                keep.add(Path(named).name)
        for folder in folders:
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
