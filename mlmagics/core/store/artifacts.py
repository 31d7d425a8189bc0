"""Artifacts (model files and folders, image snapshots), stored once per content.

    store = artifact_store("s3://team-bucket/ws", cache=Path("~/.mlmagics/cache/…/artifacts"))
    with store.storing(source, transaction) as (tx, digest, relative, size): ...   # record the row in tx
    store.local_path("sha256/<digest>/model.pkl")                                   # a verified local copy

An artifact is `sha256/<digest>/<name>`: the digest covers its names and bytes, so equal content
is stored once, for everyone who shares the store. Two kinds of store, one contract:

- `FolderStore`: a folder (the default: `artifacts/` of a folder workspace). An artifact appears
  in, or leaves, `sha256/` only under the workspace's write lock, in the transaction that adds or
  removes the last row naming it. A copy in progress lives in `.staging/<pid>-…`, an artifact being
  removed in `.trash/<pid>-…-<digest>`; what a killed process left there is put right by the next
  process that opens the workspace.
- `ObjectStore`: S3 or Azure Blob through fsspec (s3fs, adlfs), with a `FolderStore` on this machine
  as its cache. A registration copies the source into the cache (hashing it, so what is uploaded
  cannot change underneath), uploads it in parts — bounded memory, progress for large ones — and
  writes `manifests/<digest>.json` last; under the write lock it checks that every part is there
  (a concurrent delete may have removed them) before its row is committed. A delete removes the
  objects after its commit, under the lock again and only if no row uses them. So a registration
  killed at any step leaves no visible model, only objects without a row, which `sweep()` removes.
  Every download is checked against its digest before it is used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError
from . import uris
from .metadata import Transaction, WorkspaceUnavailable

_DIGEST = re.compile(r"[0-9a-f]{64}")
_SKIPPED = ("__pycache__", ".ipynb_checkpoints")
PART_BYTES = 8 << 20  # what one upload or download holds in memory at a time
PROGRESS_FROM_BYTES = 64 << 20  # transfers at least this large print progress lines
MAX_COPIED_ENTRIES = 200_000  # files and folders, counting those reached through links


class Lock(Protocol):
    """What a store needs from the workspace: its write transaction, and whether a row uses a digest."""

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]: ...

    def artifact_used(self, tx: Transaction, digest: str) -> bool: ...


def artifact_store(uri: str, cache: Path, lock: Lock) -> FolderStore | ObjectStore:
    if uris.is_object_store(uri):
        return ObjectStore(uri, FolderStore(cache, lock), lock)
    folder = uri.removeprefix("file://") if uri.startswith("file://") else uri
    return FolderStore(Path(folder).expanduser().absolute(), lock)


def digest_of(relative: str) -> str:
    """`sha256/<digest>/<name>` -> digest."""
    parts = relative.split("/")
    if len(parts) < 3 or parts[0] != "sha256" or not _DIGEST.fullmatch(parts[1]):
        raise UserError(f"{relative!r} is not an artifact path (sha256/<digest>/<name>)")
    return parts[1]


class FolderStore:
    """Artifacts in a folder: `sha256/<digest>/<name>`, read-only once stored."""

    def __init__(self, root: Path, lock: Lock) -> None:
        self.root = root
        self.lock = lock
        self.display = str(root)
        for sub in ("sha256", ".staging", ".trash"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FolderStore({self.display!r})"

    @contextlib.contextmanager
    def storing(self, source: Path) -> Iterator[tuple[Transaction, str, str, int]]:
        """Copy a file or folder in; yields (tx, digest, relative path, bytes) inside the write transaction
        in which the caller records it. The copy and its hash are made first, without the lock; the
        artifact takes its place under the lock, just before the caller's row, so a concurrent delete
        of the same content cannot take it away in between."""
        placed = ""
        try:
            with self.staged(source) as (entry, digest, size), self.lock.transaction() as tx:
                placed = digest if self.place(entry, digest) else ""
                yield tx, digest, f"sha256/{digest}/{source.name}", size
        except BaseException:
            if placed:  # the caller's row was rolled back (a failed insert, a full disk at COMMIT): its artifact goes too
                self._remove_now(placed)
            raise

    @contextlib.contextmanager
    def staged(self, source: Path) -> Iterator[tuple[Path, str, int]]:
        """A read-only copy of `source` in `.staging/` with its digest and size; removed afterwards."""
        entry = self.root / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            entry.mkdir()
            digest = hashlib.sha256(source.name.encode() + b"\0")
            size = copy_checked(source, entry / "content" / source.name, source, digest)
            hexdigest = digest.hexdigest()
            make_read_only(entry / "content" / source.name)
            (entry / "digest").write_text(hexdigest)  # from here on, a sweep knows what the copy was for
            yield entry, hexdigest, size
        finally:
            remove_tree(entry)

    def place(self, entry: Path, digest: str) -> bool:
        """Move a staged copy to `sha256/<digest>` unless it is there already; True when moved."""
        final = self.root / "sha256" / digest
        if final.exists():
            return False
        os.rename(entry / "content", final)
        return True

    def local_path(self, relative: str) -> Path:
        return self.root / relative

    def url(self, relative: str) -> str:
        return (self.root / relative).as_uri()

    def has(self, digest: str) -> bool:
        return (self.root / "sha256" / digest).exists()

    def unstore_if_unused(self, tx: Transaction, digest: str) -> Callable[[], None] | None:
        """Inside the transaction that deleted a row: take the artifact out if no row uses it any more.
        Returns what the caller runs once the transaction is committed (None: nothing to do)."""
        final = self.root / "sha256" / digest
        if self.lock.artifact_used(tx, digest) or not final.exists():
            return None
        trash = self.root / ".trash" / f"{os.getpid()}-{uuid.uuid4().hex}-{digest}"
        os.rename(final, trash)
        return lambda: remove_tree(trash)

    def _remove_now(self, digest: str) -> None:
        with contextlib.suppress(Exception):  # the caller's error is the one to report
            with self.lock.transaction() as tx:
                done = self.unstore_if_unused(tx, digest)
            if done is not None:
                done()

    def evict(self, digest: str) -> None:
        """Drop a cached copy (an ObjectStore's cache, after the artifact left the shared store)."""
        final = self.root / "sha256" / digest
        if final.exists():
            trash = self.root / ".trash" / f"{os.getpid()}-{uuid.uuid4().hex}-{digest}"
            with contextlib.suppress(OSError):
                os.rename(final, trash)
                remove_tree(trash)

    def sweep(self, is_cache: bool = False) -> None:
        """Put right what processes killed while registering or deleting left behind. For a cache
        there is nothing to reconcile with rows: leftovers just go."""
        entries = [e for folder in (".staging", ".trash") for e in (self.root / folder).iterdir() if owner_dead(e.name)]
        recorded = [(e, digest) for e in entries if (digest := _entry_digest(e))]
        removed: list[Path] = []
        if recorded and not is_cache:
            with self.lock.transaction() as tx:
                for entry, digest in recorded:
                    done = self._reconcile(tx, entry, digest)
                    if done is not None:
                        removed.append(done)
        for entry in [*entries, *removed]:
            remove_tree(entry)

    def _reconcile(self, tx: Transaction, entry: Path, digest: str) -> Path | None:
        """Under the write lock: make `sha256/<digest>` exist exactly when a row uses it."""
        final = self.root / "sha256" / digest
        if not self.lock.artifact_used(tx, digest):
            if not final.exists():
                return None
            trash = self.root / ".trash" / f"{os.getpid()}-{uuid.uuid4().hex}-{digest}"
            os.rename(final, trash)  # a register killed after placing it, before its commit
            return trash
        if not final.exists() and entry.parent.name == ".trash":
            os.rename(entry, final)  # a delete killed before its commit: its row is back, so is the artifact
        return None


class ObjectStore:
    """Artifacts in S3 or Azure Blob (`<prefix>/sha256/<digest>/<name>`, `<prefix>/manifests/<digest>.json`),
    with a FolderStore on this machine as the cache every local path comes from."""

    def __init__(self, uri: str, cache: FolderStore, lock: Lock) -> None:
        self.uri = uri
        self.display = uris.mask(uri)
        self.cache = cache
        self.lock = lock
        self.fs, self.root = _filesystem(uri, self.display)

    def __repr__(self) -> str:
        return f"ObjectStore({self.display!r})"

    # -- storing ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def storing(self, source: Path) -> Iterator[tuple[Transaction, str, str, int]]:
        with self.cache.staged(source) as (entry, digest, size):
            content = entry / "content"
            if not self._complete(digest):  # the team may have it already: equal content is stored once
                self._upload(content, digest, size)
            with self.lock.transaction() as tx:
                if not self._complete(digest):  # deleted meanwhile by a delete of its last row
                    self._upload(content, digest, size)
                self.cache.place(entry, digest)  # this machine keeps a copy: it is likely to deploy it
                yield tx, digest, f"sha256/{digest}/{source.name}", size

    def _upload(self, content: Path, digest: str, size: int) -> None:
        files = {p.relative_to(content).as_posix(): p.stat().st_size for p in sorted(content.rglob("*")) if p.is_file()}
        progress = _Transfer(f"uploading {_name(content)} to {self.display}", size)
        with self._errors("upload to"):
            for relative, _ in files.items():
                key = self._key(digest, relative)
                with open(content / relative, "rb") as src, self.fs.open(key, "wb", block_size=PART_BYTES) as dst:
                    while chunk := src.read(PART_BYTES):
                        dst.write(chunk)
                        progress.advance(len(chunk))
            manifest = {"digest": digest, "files": files, "bytes": size}
            self.fs.pipe_file(self._manifest(digest), json.dumps(manifest, sort_keys=True).encode())
        progress.done()

    def _complete(self, digest: str) -> bool:
        """Whether the manifest and every part it names (with its size) are in the store."""
        with self._errors("read"):
            try:
                manifest = json.loads(self.fs.cat_file(self._manifest(digest)))
            except FileNotFoundError:
                return False
            prefix = f"{self.root}/sha256/{digest}/"
            self.fs.invalidate_cache(prefix)
            found = {info["name"]: info.get("size") for info in self.fs.find(prefix, detail=True).values()}
        return all(found.get(_strip(self._key(digest, rel))) == size for rel, size in manifest["files"].items())

    # -- reading ----------------------------------------------------------------------------------------
    def local_path(self, relative: str) -> Path:
        """A local copy of the artifact, fetched on first use and checked against its digest."""
        digest = digest_of(relative)
        if not self.cache.has(digest):
            self._download(digest)
        return self.cache.local_path(relative)

    def has(self, digest: str) -> bool:
        return self._complete(digest)

    def url(self, relative: str) -> str:
        return f"{self.display.rstrip('/')}/{relative}"

    def _download(self, digest: str) -> None:
        with self._errors("download from"):
            try:
                manifest = json.loads(self.fs.cat_file(self._manifest(digest)))
            except FileNotFoundError:
                raise UserError(f"artifact sha256/{digest} is not in {self.display} (deleted, or never uploaded)") from None
            entry = self.cache.root / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
            try:
                progress = _Transfer(f"downloading sha256/{digest[:12]} from {self.display}", manifest["bytes"])
                for relative in manifest["files"]:
                    target = entry / "content" / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with self.fs.open(self._key(digest, relative), "rb", block_size=PART_BYTES) as src, open(target, "wb") as dst:
                        while chunk := src.read(PART_BYTES):
                            dst.write(chunk)
                            progress.advance(len(chunk))
                progress.done()
                names = list((entry / "content").iterdir())
                if len(names) != 1:
                    raise UserError(f"artifact sha256/{digest} in {self.display} is malformed ({len(names)} roots)")
                found = hashlib.sha256(names[0].name.encode() + b"\0")
                copy_checked(names[0], None, names[0], found)
                if found.hexdigest() != digest:
                    raise UserError(
                        f"artifact sha256/{digest} in {self.display} does not match its digest (changed or corrupted in the "
                        "store); register the model again"
                    )
                make_read_only(names[0])
                self.cache.place(entry, digest)
            finally:
                remove_tree(entry)

    # -- removing ---------------------------------------------------------------------------------------
    def unstore_if_unused(self, tx: Transaction, digest: str) -> Callable[[], None] | None:
        """After the commit, under the lock again: remove the objects if still no row uses them."""
        if self.lock.artifact_used(tx, digest):
            return None

        def remove() -> None:
            with self.lock.transaction() as again:
                if not self.lock.artifact_used(again, digest):
                    self._remove(digest)
            self.cache.evict(digest)

        return remove

    def _remove(self, digest: str) -> None:
        with self._errors("delete from"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._manifest(digest))  # first: without it the rest counts as incomplete
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(f"{self.root}/sha256/{digest}", recursive=True)

    def sweep(self, older_than_s: float = 3600) -> list[str]:
        """Remove objects no row uses (left by registrations killed before their commit), if older than
        `older_than_s` (a registration in flight uploads before it takes the lock). Returns their digests."""
        self.cache.sweep(is_cache=True)
        with self._errors("list"):
            found = {}
            for info in self.fs.ls(f"{self.root}/sha256", detail=True) if self.fs.exists(f"{self.root}/sha256") else []:
                digest = info["name"].rstrip("/").rsplit("/", 1)[-1]
                if _DIGEST.fullmatch(digest):
                    found[digest] = info
        now = time.time()
        removed = []
        with self.lock.transaction() as tx:
            for digest in found:
                if self.lock.artifact_used(tx, digest):
                    continue
                if now - self._modified(digest) >= older_than_s:
                    self._remove(digest)
                    removed.append(digest)
        return removed

    def _modified(self, digest: str) -> float:
        with contextlib.suppress(FileNotFoundError):
            return self.fs.modified(self._manifest(digest)).timestamp()
        times = [self.fs.modified(name).timestamp() for name in self.fs.find(f"{self.root}/sha256/{digest}")]
        return max(times, default=0.0)

    # -- names ------------------------------------------------------------------------------------------
    def _key(self, digest: str, relative: str) -> str:
        return f"{self.root}/sha256/{digest}/{relative}"

    def _manifest(self, digest: str) -> str:
        return f"{self.root}/manifests/{digest}.json"

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """A store that cannot be reached, refuses the credentials or the write: one line naming it."""
        try:
            yield
        except UserError:
            raise
        except FileNotFoundError as e:  # a missing manifest is caught where it is asked for: this is the bucket
            raise WorkspaceUnavailable(f"cannot {doing} the artifact store {self.display}: {_short(e)}") from None
        except PermissionError as e:
            why = f"permission denied ({_short(e)})"
            raise WorkspaceUnavailable(f"cannot {doing} the artifact store {self.display}: {why}") from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise WorkspaceUnavailable(f"cannot {doing} the artifact store {self.display}: {_short(e)}") from None
        except Exception as e:  # botocore / azure-core errors (not OSErrors; adlfs raises RuntimeErrors): by origin
            if not _from_storage_library(e):
                raise
            raise WorkspaceUnavailable(f"cannot {doing} the artifact store {self.display}: {_short(e)}") from None


def _filesystem(uri: str, display: str) -> tuple[Any, str]:
    import fsspec

    protocol = uris.OBJECT_SCHEMES[uris.scheme(uri)]
    try:
        # a filesystem of its own: fsspec's shared instances keep the credentials of the first caller
        options = {"use_listings_cache": False} if protocol == "s3" else {}
        fs, root = fsspec.core.url_to_fs(uri, skip_instance_cache=True, **options)
    except ImportError:
        extra = "s3" if protocol == "s3" else "azure"
        raise UserError(f"the artifact store {display} needs the [{extra}] extra: pip install 'mlmagics[{extra}]'") from None
    except ValueError as e:  # adlfs without an account or connection string
        raise WorkspaceUnavailable(f"cannot open the artifact store {display}: {_short(e)}") from None
    return fs, root.rstrip("/")


_STORAGE_LIBRARIES = {"botocore", "aiobotocore", "azure", "aiohttp", "s3fs", "adlfs", "fsspec"}


def _from_storage_library(error: BaseException) -> bool:
    """Whether the error was raised by (or its type belongs to) a storage client library."""
    if type(error).__module__.split(".")[0] in _STORAGE_LIBRARIES:
        return True
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and str(frame.tb_frame.f_globals.get("__name__", "")).split(".")[0] in _STORAGE_LIBRARIES


def _strip(key: str) -> str:
    return key.lstrip("/")


def _name(content: Path) -> str:
    names = [p.name for p in content.iterdir()]
    return names[0] if len(names) == 1 else str(content)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


class _Transfer:
    """Progress lines for a large transfer: every 10 %, on stderr."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done_bytes, self.shown = what, total, 0, 0
        self.start = time.monotonic()

    def advance(self, n: int) -> None:
        self.done_bytes += n
        if self.total >= PROGRESS_FROM_BYTES and self.done_bytes * 10 // self.total > self.shown:
            self.shown = self.done_bytes * 10 // self.total
            print(f"{self.what}: {self.shown * 10} % ({self.done_bytes >> 20} of {self.total >> 20} MiB)", flush=True)

    def done(self) -> None:
        if self.total >= PROGRESS_FROM_BYTES:
            seconds = time.monotonic() - self.start
            print(f"{self.what}: done, {self.total >> 20} MiB in {seconds:.1f} s", flush=True)


def _entry_digest(entry: Path) -> str | None:
    """What a staging or trash entry was for: the digest in a trash entry's name, or in a copy's `digest` file."""
    if entry.parent.name == ".trash":
        text = entry.name.rsplit("-", 1)[-1]
    else:
        try:
            text = (entry / "digest").read_text().strip()
        except OSError:
            return None
    return text if _DIGEST.fullmatch(text) else None


def owner_dead(entry_name: str) -> bool:
    """Whether the process that made a `<pid>-…` entry is gone."""
    pid = entry_name.split("-", 1)[0]
    return pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- copying files in: what may leak or hang is refused ----------------------------------------------------
def copy_checked(source: Path, target: Path | None, root: Path, digest: Any = None) -> int:
    """Copy the file or folder `source` to `target` (None: only hash it) hashing names and bytes into
    `digest`; returns bytes.

    Links are followed while they stay inside `root`; a link out of it, a link loop, a FIFO,
    a device or a socket is a UserError naming it, so nothing from outside the folder is
    copied and nothing blocks. `__pycache__` and `.ipynb_checkpoints` are skipped.
    """
    return _Copy(os.path.realpath(root), digest).entry(source, target, ())


class _Copy:
    def __init__(self, root: str, digest: Any) -> None:
        self.root = root
        self.digest = digest
        self.entries = 0

    def entry(self, source: Path, target: Path | None, ancestors: tuple[str, ...]) -> int:
        self.entries += 1
        if self.entries > MAX_COPIED_ENTRIES:  # links can make a small folder look endless
            raise UserError(f"{source}: more than {MAX_COPIED_ENTRIES} files and folders to copy (counting links)")
        real, mode = self.checked(source, ancestors)
        if not stat.S_ISDIR(mode):
            return self.file(source, real, target)
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
        total = 0
        for child in sorted(source.iterdir()):
            if child.name in _SKIPPED:
                continue
            if self.digest is not None:
                self.digest.update(b"\0dir\0" if child.is_dir() else b"\0file\0")
                self.digest.update(child.name.encode() + b"\0")
            total += self.entry(child, None if target is None else target / child.name, (*ancestors, real))
        return total

    def checked(self, source: Path, ancestors: tuple[str, ...]) -> tuple[str, int]:
        """The real path behind `source` and its file type, or a UserError saying why it cannot be copied."""
        try:
            real = os.path.realpath(source, strict=True)
        except OSError as e:
            why = "is a link loop" if e.errno == errno.ELOOP else "is a link to nothing" if source.is_symlink() else e.strerror
            raise UserError(f"{source} {why}; remove it or replace it with the file it stands for") from None
        if os.path.commonpath([real, self.root]) != self.root:
            raise UserError(f"{source} links to {real}, outside {self.root}; copy the file in instead of linking to it")
        mode = os.stat(real).st_mode
        if stat.S_ISDIR(mode) and real in ancestors:
            raise UserError(f"{source} is a link loop (it links to {real}, a folder that contains it)")
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise UserError(f"{source} is a {_kind(mode)}; only regular files and folders can be copied")
        return real, mode

    def file(self, source: Path, real: str, target: Path | None) -> int:
        # O_NONBLOCK and O_NOFOLLOW: should `real` be swapped for a FIFO or a link after the check,
        # opening it neither blocks nor follows it, and the fstat below refuses it.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with open(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserError(f"{source} changed while it was copied; copy it again")
            size = 0
            with contextlib.ExitStack() as stack:
                dst = None
                if target is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    dst = stack.enter_context(open(target, "wb"))
                while chunk := src.read(1 << 20):
                    if self.digest is not None:
                        self.digest.update(chunk)
                    if dst is not None:
                        dst.write(chunk)
                    size += len(chunk)
        if target is not None:
            shutil.copystat(real, target)
        return size


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return name
    return "special file"


def make_read_only(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            make_read_only(child)
        path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    else:
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for folder, dirs, _ in os.walk(path):
        os.chmod(folder, 0o755)
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)
