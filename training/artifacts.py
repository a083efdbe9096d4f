"""The artifact store: where every host finds what any host wrote (decision 20). Best models, full
resumable saves, predictions, result files and reports are written to the local working copy first
($SWEEP_EXPERIMENTS_DIR, $SWEEP_REPORTS_DIR) and then sent to the store named by
$SWEEP_ARTIFACTS_URL: an fsspec URL (s3://bucket/prefix through s3fs, which also serves
S3-compatible stores such as MinIO with AWS_ENDPOINT_URL; gs://... where gcsfs is installed) or a
path on a shared file system.

Unset, the working copy is the store: every artifact stays where it is written today, and a store
URL is that local path. Set, the store mirrors the working copy's layout under
<url>/experiments/<dag>/<run>/<key>/... and <url>/reports/<dag>/<run>/....

A folder is whole in the store once its manifest (_manifest.json, every file with its size) is
there; the manifest is written last, so a reader never takes a half-uploaded checkpoint for a whole
one. Single files are one object (atomic in an object store; written aside and renamed on a file
system)."""

from __future__ import annotations

import functools
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "_manifest.json"
PARTIAL = ".partial"


class StoreError(OSError):
    """The artifact store could not be read or written (down, unreachable, refused)."""


@functools.cache
def filesystem(url: str):
    """(fsspec filesystem, root path) of a store URL; one per process and URL."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:  # s3:// without s3fs, gs:// without gcsfs
        raise StoreError(f"the artifact store {url} needs a package that is not installed: {error}") from error


def on_disk(fs) -> bool:
    """Whether an fsspec filesystem is a local (or mounted) one, where a write is made whole by a rename."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def write_aside(path: str, write) -> None:
    """A file on disk written beside its place and renamed into it: a reader never sees it half written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    staging = Path(f"{path}.{uuid.uuid4().hex}{PARTIAL}")
    write(staging)
    staging.replace(path)


def stored(call):
    """Any failure of the store's client (botocore's, aiohttp's, the OS's) as a StoreError naming it."""
    @functools.wraps(call)
    def wrapper(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (StoreError, FileNotFoundError):
            raise
        except Exception as error:
            raise StoreError(f"artifact store: {type(error).__name__}: {error}") from error
    return wrapper


@dataclass(frozen=True)
class ArtifactStore:
    url: str | None  # None: the working copy is the store
    experiments_dir: str
    reports_dir: str

    @classmethod
    def of(cls, storage) -> ArtifactStore:
        return cls(storage.artifacts_url, storage.experiments_dir, storage.reports_dir)

    @property
    def shared(self) -> bool:
        """Whether artifacts are copied to a store beyond the working copy."""
        return self.url is not None

    def url_of(self, local: Path | str) -> str:
        """Where a working-copy path lives in the store (the path itself when the store is local)."""
        local = Path(local)
        for base, prefix in ((self.experiments_dir, "experiments"), (self.reports_dir, "reports")):
            if local.is_relative_to(base):
                if not self.shared:
                    return str(local)
                relative = local.relative_to(base).as_posix()
                return f"{self.url.rstrip('/')}/{prefix}" + (f"/{relative}" if relative != "." else "")
        raise ValueError(f"{local} is under neither {self.experiments_dir} nor {self.reports_dir}")

    def _fs(self, url: str):
        fs, _ = filesystem(self.url if self.shared else "file://")
        return fs, fs._strip_protocol(url)

    # Writing ----------------------------------------------------------------------------------------

    @stored
    def put_file(self, local: Path, url: str | None = None) -> str:
        """One file, whole or not at all from a reader's point of view; returns its URL."""
        url = url or self.url_of(local)
        if not self.shared:
            return url
        fs, path = self._fs(url)
        if on_disk(fs):
            write_aside(path, lambda staging: shutil.copyfile(local, staging))
        else:
            fs.put_file(str(local), path)
        return url

    @stored
    def put_folder(self, local: Path, url: str | None = None) -> str:
        """Every file of a folder, then its manifest; returns the folder's URL."""
        url = url or self.url_of(local)
        if not self.shared:
            return url
        files = {p.relative_to(local).as_posix(): p.stat().st_size
                 for p in sorted(local.rglob("*")) if p.is_file() and p.name != MANIFEST}
        for name in files:
            self.put_file(local / name, f"{url}/{name}")
        self.write_text(f"{url}/{MANIFEST}", json.dumps({"files": files}))
        return url

    @stored
    def write_text(self, url: str, text: str) -> None:
        fs, path = self._fs(url)
        if on_disk(fs):
            write_aside(path, lambda staging: staging.write_text(text))
        else:
            fs.pipe_file(path, text.encode())

    @stored
    def remove(self, url: str) -> None:
        """A folder (manifest first, so it stops counting as whole at once) or a file."""
        fs, path = self._fs(url)
        if fs.exists(f"{path}/{MANIFEST}"):
            fs.rm(f"{path}/{MANIFEST}")
        if fs.exists(path):
            fs.rm(path, recursive=True)

    # Reading ----------------------------------------------------------------------------------------

    @stored
    def read_bytes(self, url: str) -> bytes:
        fs, path = self._fs(url)
        return fs.cat_file(path)

    @stored
    def exists(self, url: str) -> bool:
        fs, path = self._fs(url)
        return fs.exists(path)

    @stored
    def manifest(self, url: str) -> dict | None:
        """A folder's manifest ({name: size}) if the folder is whole in the store, else None."""
        try:
            return json.loads(self.read_bytes(f"{url}/{MANIFEST}"))["files"]
        except FileNotFoundError:
            return None

    @stored
    def folders(self, url: str) -> list[str]:
        """The names of the folders directly under url."""
        fs, path = self._fs(url)
        try:
            return sorted(Path(entry["name"]).name for entry in fs.ls(path, detail=True, refresh=True)
                          if entry["type"] == "directory")
        except FileNotFoundError:
            return []

    @stored
    def get_file(self, url: str, local: Path) -> Path:
        fs, path = self._fs(url)
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.with_name(local.name + PARTIAL)
        fs.get_file(path, str(staging))
        staging.replace(local)
        return local

    @stored
    def get_folder(self, url: str, local: Path) -> Path | None:
        """A whole folder (by its manifest, sizes checked) into local; None if it is not whole."""
        files = self.manifest(url)
        if files is None:
            return None
        staging = local.with_name(local.name + PARTIAL)
        shutil.rmtree(staging, ignore_errors=True)
        for name, size in files.items():
            target = self.get_file(f"{url}/{name}", staging / name)
            if target.stat().st_size != size:
                raise StoreError(f"{url}/{name}: {target.stat().st_size} bytes, the manifest says {size}")
        shutil.rmtree(local, ignore_errors=True)
        staging.replace(local)
        return local


def open_artifact(path_or_url: str):
    """A file by the path or URL a row records (predictions_path, say), opened for reading."""
    import fsspec

    try:
        return fsspec.open(path_or_url, "rb").open()
    except FileNotFoundError:
        raise
    except Exception as error:
        raise StoreError(f"could not open {path_or_url}: {type(error).__name__}: {error}") from error
