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
  as its cache. A file is stored as chunks of CHUNK_BYTES (the last one shorter), each the object
  `chunks/<its sha256>`: equal bytes are stored once whichever artifacts hold them, and an
  artifact is its manifest, `manifests/<digest>.json` (its files, their sizes and chunks, its
  folders), written last. A registration copies the source into the cache (hashing it, so what is
  uploaded cannot change underneath) and sends each chunk as soon as the copy has hashed it,
  UPLOAD_CHUNKS_AT_ONCE at a time, each read from the copy as it is sent (bounded memory; progress
  for large ones); content the workspace may hold already (its first chunk is recorded) waits for
  the digest instead, and content the store has already is not uploaded again. The chunks of each
  artifact a row uses are recorded in `artifact_chunks`, in the transaction of that row; removing
  an artifact removes the chunks no other recorded artifact holds. Nothing slow happens under the
  write lock: a delete or a sweep records the digest in `artifact_removals` (committed) before it
  removes any object, and counts the removal in the transaction that removes them; under the lock, a
  registration reads that row and that count in one query, and only if objects were removed since it
  began (rare) checks the store and uploads again before its row is committed. So a registration
  killed at any step leaves no visible model, only objects without a row, which `sweep()` removes; a
  delete killed while removing leaves its record, so the next registration of that content checks
  the store. Every download is checked against its digest before it is used. Artifacts stored
  before chunks (`sha256/<digest>/<relative path>`, a manifest without `chunks`) are read, reused
  and removed as they are. Filesystem clients are shared per process (a new one costs ~0.3 s).

What comes from the shared stores is untrusted input: a manifest is read up to MAX_MANIFEST_BYTES,
must name at most MAX_COPIED_ENTRIES plain relative paths under one root (no '..', no absolute
path), and a download writes only inside its staging folder, no more bytes than the manifest
declares and only when they fit on the disk. A digest or artifact path read from the database is
checked the same way before it names a file or an object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import errno
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from ..errors import StorageFullError, UserError
from . import uris
from .metadata import Transaction, WorkspaceUnavailable

_DIGEST = re.compile(r"[0-9a-f]{64}")
_SKIPPED = ("__pycache__", ".ipynb_checkpoints")
CHUNK_BYTES = 8 << 20  # a file is stored in chunks of this size, each an object (one request); what a download holds at a time
UPLOAD_CHUNKS_AT_ONCE = 4  # chunks in flight together (each read from the copy as it is sent, not held)
MAX_CHUNK_BYTES = 5 << 30  # what a manifest may say a chunk holds (S3's limit for one object in one request)
PROGRESS_FROM_BYTES = 64 << 20  # transfers at least this large print progress lines
MAX_COPIED_ENTRIES = 200_000  # files and folders, counting those reached through links
MAX_DEPTH = 128  # folders within folders: deeper would end in a RecursionError (copies, hashes and chmods recurse)
MAX_MANIFEST_BYTES = 64 << 20  # a manifest of MAX_COPIED_ENTRIES long names fits well within this
MAX_NAME_BYTES = 255  # a file name, as Linux file systems allow
UPLOAD_ATTEMPTS = 4  # a part whose upload failed (and that no one else wrote meanwhile) is tried again
FOREIGN_ENTRY_S = 24 * 3600  # a staging or trash entry of another host is left alone for a day (a shared folder)


class Swept(list[str]):
    """What a sweep removed: the digests of the artifacts (the list itself), and in `chunks` the chunks no recorded
    artifact held — what registrations killed before their commit sent (with or without their manifest)."""

    def __init__(self, digests: Iterable[str] = (), chunks: Iterable[str] = ()) -> None:
        super().__init__(digests)
        self.chunks = list(chunks)


class Lock(Protocol):
    """What a store needs from the workspace: its write transaction, reads, and whether a row uses a digest."""

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]: ...

    def artifact_used(self, tx: Transaction | None, digest: str) -> bool: ...


def artifact_store(uri: str, cache: Path, lock: Lock) -> FolderStore | ObjectStore:
    if uris.is_object_store(uri):
        return ObjectStore(uri, FolderStore(cache, lock), lock)
    folder = uri.removeprefix("file://") if uri.startswith("file://") else uri
    return FolderStore(Path(folder).expanduser().absolute(), lock)


def digest_of(relative: str) -> str:
    """`sha256/<digest>/<name>` -> digest; anything else (more parts, '..', a name that is no file name) is a
    UserError: the path comes from the database, and names a file on this machine."""
    parts = relative.split("/") if isinstance(relative, str) else []
    if len(parts) != 3 or parts[0] != "sha256" or not _DIGEST.fullmatch(parts[1]) or not _safe_name(parts[2]):
        raise UserError(f"{relative!r:.200} is not an artifact path (sha256/<digest>/<name>)")
    return parts[1]


def checked_digest(digest: str) -> str:
    """A digest read from the database, before it names a folder or an object: 64 hex digits, or a UserError."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise UserError(f"{digest!r:.80} is not an artifact digest (64 hex digits)")
    return digest


def _safe_name(name: str) -> bool:
    return name not in ("", ".", "..") and "\0" not in name and len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES


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
        with self.staging() as entry:
            yield entry, *self.copy_in(source, entry)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A new entry of `.staging/`, removed afterwards with whatever was copied into it."""
        entry = self.root / ".staging" / entry_name()
        try:
            entry.mkdir()
            yield entry
        finally:
            remove_tree(entry)

    def copy_in(self, source: Path, entry: Path, chunks: ChunkSink | None = None) -> tuple[str, int]:
        """Copy `source` into a staging entry (`content/<name>`, read-only); returns its digest and size.
        `chunks`, if given, is handed each chunk of each file as soon as it is copied."""
        digest = hashlib.sha256(source.name.encode() + b"\0")
        size = copy_checked(source, entry / "content" / source.name, source, digest, chunks)
        hexdigest = digest.hexdigest()
        make_read_only(entry / "content" / source.name)
        (entry / "digest").write_text(hexdigest)  # from here on, a sweep knows what the copy was for
        return hexdigest, size

    def place(self, entry: Path, digest: str) -> bool:
        """Move a staged copy to `sha256/<digest>` unless it is there already; True when moved. Two placing
        the same content at once (two threads or processes fetching it into one cache) both succeed."""
        final = self.root / "sha256" / checked_digest(digest)
        if final.exists():
            return False
        try:
            os.rename(entry / "content", final)
        except OSError as e:  # renaming a folder onto a folder that is not empty: another placed it first
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.exists():
                return False
            raise
        return True

    def local_path(self, relative: str) -> Path:
        digest_of(relative)
        return self.root / relative

    def url(self, relative: str) -> str:
        return (self.root / relative).as_uri()

    def has(self, digest: str) -> bool:
        return (self.root / "sha256" / checked_digest(digest)).exists()

    def unstore_if_unused(self, tx: Transaction, digest: str) -> Callable[[], None] | None:
        """Inside the transaction that deleted a row: take the artifact out if no row uses it any more.
        Returns what the caller runs once the transaction is committed (None: nothing to do)."""
        final = self.root / "sha256" / checked_digest(digest)
        if self.lock.artifact_used(tx, digest) or not final.exists():
            return None
        trash = self.root / ".trash" / entry_name(digest)
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
        final = self.root / "sha256" / checked_digest(digest)
        if final.exists():
            trash = self.root / ".trash" / entry_name(digest)
            with contextlib.suppress(OSError):
                os.rename(final, trash)
                remove_tree(trash)

    def sweep(self, is_cache: bool = False) -> None:
        """Put right what processes killed while registering or deleting left behind. For a cache
        there is nothing to reconcile with rows: leftovers just go."""
        entries = [e for folder in (".staging", ".trash") for e in (self.root / folder).iterdir() if owner_dead(e.name, e)]
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
            trash = self.root / ".trash" / entry_name(digest)
            os.rename(final, trash)  # a register killed after placing it, before its commit
            return trash
        if not final.exists() and entry.parent.name == ".trash":
            os.rename(entry, final)  # a delete killed before its commit: its row is back, so is the artifact
        return None


class ObjectStore:
    """Artifacts in S3 or Azure Blob: `<prefix>/manifests/<digest>.json` and `<prefix>/chunks/<sha256>` (stored before
    chunks: `<prefix>/sha256/<digest>/<relative path>`), with a FolderStore on this machine as the cache every local
    path comes from.

    A manifest is `{"digest", "files": {relative path: bytes}, "dirs": [relative folders], "bytes", "chunk_bytes",
    "chunks": {relative path: [the SHA-256 of each chunk, in order]}}`; `dirs` (every folder, so an empty one comes
    back too) is absent from those of mlmagics 0.2.0, `chunk_bytes` and `chunks` from those written before schema
    0004."""

    def __init__(self, uri: str, cache: FolderStore, lock: Lock) -> None:
        self.uri = uri
        self.display = uris.mask(uri)
        self.secrets = tuple(uris.secrets_of(uri))
        self.cache = cache
        self.lock = lock
        self.protocol = uris.OBJECT_SCHEMES[uris.scheme(uri)]
        self._fs, self.root = _filesystem(uri, self.display)
        self._fs_pid = os.getpid()

    def __repr__(self) -> str:
        return f"ObjectStore({self.display!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem; a forked child makes its own (s3fs and adlfs refuse to run on their parent's
        event loop)."""
        if self._fs_pid != os.getpid():
            self._fs, self.root = _filesystem(self.uri, self.display)
            self._fs_pid = os.getpid()
        return self._fs

    # -- storing ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def storing(self, source: Path) -> Iterator[tuple[Transaction, str, str, int]]:
        removed = self._removals()  # read before any chunk is sent: a removal after it is seen under the lock
        what = f"uploading {source.name} to {self.display}"
        # the uploads end (sent, or stopped and waited for) before the copy they read is removed
        with self.cache.staging() as entry, _Uploads(self, what) as uploads:
            digest, size = self.cache.copy_in(source, entry, uploads)  # chunks go up while the rest is hashed
            listing = uploads.manifest(entry / "content", size)
            recorded = self.lock.artifact_used(None, digest)  # then the row that uses it recorded its chunks
            if recorded:
                # its objects are there (removed only once no row names them): only the manifest is read, so that
                # one damaged in the store is written again
                stored = self._complete(digest, listing, parts=False)
            else:  # on S3 one small file costs as much to upload as to look for (adlfs's upload to an unreachable
                # store retries for minutes, a read fails at once); else the team may have it already
                stored = None if self.protocol == "s3" and _one_object(listing) else self._complete(digest, listing)
            if stored is None:
                self._upload(uploads, digest, listing)
                stored, recorded = listing, False
            else:
                uploads.cancel()
            with self.lock.transaction() as tx:
                if self._removed_since(tx, digest, removed):  # a delete or a sweep removed objects meanwhile
                    stored = self._complete(digest, listing)
                    if stored is None:
                        with _Uploads(self, f"{what} again") as again:
                            again.offer_all(entry / "content", listing)
                            self._upload(again, digest, listing)
                        stored = listing
                    tx.execute("DELETE FROM artifact_removals WHERE digest=:digest", {"digest": digest})
                    recorded = False
                if not recorded:  # else the row using it recorded its chunks, and no removal (counted) came since
                    _record_chunks(tx, digest, stored)
                self.cache.place(entry, digest)  # this machine keeps a copy: it is likely to deploy it
                yield tx, digest, f"sha256/{digest}/{source.name}", size

    def _removals(self) -> int:
        """How many removals of objects the workspace has committed."""
        rows = self.lock.query("SELECT last FROM counters WHERE kind='artifacts' AND name='removed'")
        return int(rows[0]["last"]) if rows else 0

    def _removed_since(self, tx: Transaction, digest: str, removed: int) -> bool:
        """Under the lock, one query: whether objects were removed since `removed` was read, or a removal of
        `digest` was begun and not finished (a delete killed while removing its objects)."""
        row = tx.execute(
            "SELECT (SELECT last FROM counters WHERE kind='artifacts' AND name='removed') AS removed,"
            " (SELECT COUNT(*) FROM artifact_removals WHERE digest=:digest) AS removing",
            {"digest": digest},
        ).one()
        return int(row["removed"] or 0) != removed or bool(row["removing"])

    def _recorded(self, chunk: str) -> bool:
        """Whether an artifact the workspace recorded holds this chunk."""
        return bool(self.lock.query("SELECT 1 FROM artifact_chunks WHERE chunk=:chunk LIMIT 1", {"chunk": chunk}))

    def _upload(self, uploads: _Uploads, digest: str, listing: Manifest) -> None:
        """Send the chunks `uploads` holds back, wait for every one, then write the manifest."""
        with self._errors("upload to"):
            uploads.finish()
            self.fs.pipe_file(self._manifest(digest), listing.dump(digest))
        uploads.progress.done()

    def _put(self, path: Path, key: str, size: int, offset: int = 0, sha256: str = "") -> None:
        """Upload `size` bytes of a file from `offset` as one object. Registrations of equal content upload the
        same keys at the same time, and Azure Blob refuses all but one of them (InvalidBlockList: a commit drops the
        others' uncommitted blocks): an object that failed but is there now, whole, was written by another; else it
        is tried again."""
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                self._send(path, key, size, offset, sha256)
                return
            except Exception as e:
                local = isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or e.filename == str(path))
                if local or not (isinstance(e, OSError) or _from_storage_library(e)):
                    raise
                if self._has_part(key, size):
                    return
                if attempt == UPLOAD_ATTEMPTS:
                    raise
                time.sleep(0.25 * attempt)

    def _send(self, path: Path, key: str, size: int, offset: int, sha256: str) -> None:
        """S3: `_send_s3`. Azure: a stream of blocks."""
        if self.protocol == "s3":
            from fsspec.asyn import sync

            sync(self.fs.loop, self._send_s3, path, key, size, offset, sha256)
            return
        with _FileSlice(path, offset, size) as src, self.fs.open(key, "wb", block_size=CHUNK_BYTES) as dst:
            while data := src.read(CHUNK_BYTES):
                dst.write(data)

    async def _send_s3(self, path: Path, key: str, size: int, offset: int, sha256: str) -> None:
        """One request, its body read from the file as it is sent (s3fs's put_file reads it into memory, and aiohttp
        copies it). When the client adds checksums (botocore's default) it is given the chunk's SHA-256: S3 checks
        the bytes against the chunk's very name, and botocore computes no CRC32 of its own (as costly as the hash)."""
        bucket, name, _ = self.fs.split_path(key)
        client = await self.fs.set_session()
        checksum = {}
        if sha256 and getattr(client.meta.config, "request_checksum_calculation", None) != "when_required":
            checksum["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        with _FileSlice(path, offset, size) as body:
            await self.fs._call_s3("put_object", Bucket=bucket, Key=name, Body=body, ContentLength=size, **checksum)

    def _has_part(self, key: str, size: int) -> bool:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(key)
            return bool(self.fs.info(key).get("size") == size)
        return False

    def _complete(self, digest: str, expected: Manifest | None = None, parts: bool = True) -> Manifest | None:
        """The manifest of `digest` if it and every object it names (with its size) are in the store, else None;
        with `expected` (what a registration holds), only if the manifest names exactly its files and folders
        (chunked or not); with `parts=False`, the manifest alone. A malformed manifest is not complete: a
        registration of the content writes it again."""
        try:
            manifest = self._read_manifest(digest)
        except UserError:
            return None
        if manifest is None:
            return None
        if expected is not None and (manifest.files, manifest.folders()) != (expected.files, expected.folders()):
            return None
        if not parts:
            return manifest
        with self._errors("read"):
            if manifest.chunks is None:
                prefix = f"{self.root}/sha256/{digest}/"
                self.fs.invalidate_cache(prefix)
                found = {_strip(info["name"]): info.get("size") for info in self.fs.find(prefix, detail=True).values()}
                wanted = {_strip(self._key(digest, relative)): size for relative, size in manifest.files.items()}
            else:
                wanted = {_strip(self._chunk_key(chunk)): size for chunk, size in manifest.chunk_sizes().items()}
                found = self._sizes(list(wanted))
        return manifest if all(found.get(key) == size for key, size in wanted.items()) else None

    def _sizes(self, keys: list[str]) -> dict[str, int | None]:
        """The size of each object (None: not there), asked at once."""
        from fsspec.asyn import sync

        async def ask(key: str) -> int | None:
            try:
                return int((await self.fs._info(key))["size"])
            except FileNotFoundError:
                return None

        async def ask_all() -> list[int | None]:
            sizes: list[int | None] = []
            for batch in _batches(keys, 256):
                sizes += await asyncio.gather(*(ask(key) for key in batch))
            return sizes

        self.fs.invalidate_cache(f"{self.root}/chunks")
        return dict(zip(keys, sync(self.fs.loop, ask_all), strict=True))

    def _read_manifest(self, digest: str) -> Manifest | None:
        """The manifest of `digest`, checked (None: there is none); a UserError when it is malformed."""
        with self._errors("read"):
            try:
                raw = self.fs.cat_file(self._manifest(checked_digest(digest)), start=0, end=MAX_MANIFEST_BYTES + 1)
            except FileNotFoundError:
                return None
        return Manifest.parse(raw, f"artifact sha256/{digest} in {self.display}")

    # -- reading ----------------------------------------------------------------------------------------
    def local_path(self, relative: str) -> Path:
        """A local copy of the artifact, fetched on first use and checked against its digest."""
        digest = digest_of(relative)
        if not self.cache.has(digest):
            self._download(digest)
        return self.cache.local_path(relative)

    def has(self, digest: str) -> bool:
        return self._complete(checked_digest(digest)) is not None

    def url(self, relative: str) -> str:
        """The manifest that names the artifact's objects (masked)."""
        return f"{self.display.rstrip('/')}/manifests/{digest_of(relative)}.json"

    def _download(self, digest: str) -> None:
        what = f"artifact sha256/{digest} in {self.display}"
        manifest = self._read_manifest(digest)
        if manifest is None:
            raise UserError(f"{what} is not there (deleted, or never uploaded)")
        needed = sum(manifest.files.values())
        free = shutil.disk_usage(self.cache.root).free
        if needed + (64 << 20) > free:  # the manifest may lie, but not so as to fill this disk
            raise StorageFullError(f"{what} takes {needed >> 20} MiB; {free >> 20} MiB are free in {self.cache.root}")
        entry = self.cache.root / ".staging" / entry_name()
        try:
            with self._errors("download from"):
                content = entry / "content"
                content.mkdir(parents=True)
                for folder in manifest.dirs:
                    (content / folder).mkdir(parents=True, exist_ok=True)
                progress = _Transfer(f"downloading sha256/{digest[:12]} from {self.display}", needed)
                for relative in manifest.files:
                    (content / relative).parent.mkdir(parents=True, exist_ok=True)
                    with open(content / relative, "xb") as target:  # a new file: never through a link
                        for key, size in self._objects(digest, manifest, relative):
                            self._fetch(key, target, size, what, progress)
                progress.done()
            names = list(content.iterdir())
            if len(names) != 1:
                raise UserError(f"{what} is malformed ({len(names)} roots)")
            found = hashlib.sha256(names[0].name.encode() + b"\0")
            copy_checked(names[0], None, names[0], found)
            if found.hexdigest() != digest:  # a registration of equal content finds the objects there and keeps them
                raise UserError(
                    f"{what} does not match its digest (changed or corrupted in the store); remove manifests/{digest}.json "
                    "from the store, then register the model again: that uploads it anew"
                )
            make_read_only(names[0])
            self.cache.place(entry, digest)
        finally:
            remove_tree(entry)

    def _objects(self, digest: str, manifest: Manifest, relative: str) -> list[tuple[str, int]]:
        """The objects a file is read from, in order, with their sizes: its chunks, or the one object of before."""
        if manifest.chunks is None:
            return [(self._key(digest, relative), manifest.files[relative])]
        return [(self._chunk_key(chunk), size) for _, size, chunk in manifest.pieces(relative)]

    def _fetch(self, key: str, target: Any, size: int, what: str, progress: _Transfer) -> None:
        """One object onto the end of `target`, no more than `size` bytes."""
        written = 0
        with self.fs.open(key, "rb", block_size=CHUNK_BYTES) as src:
            while data := src.read(min(CHUNK_BYTES, size - written + 1)):
                written += len(data)
                if written > size:
                    raise UserError(f"{what} does not match its digest (a part is larger than its manifest says)")
                target.write(data)
                progress.advance(len(data))
        if written != size:
            raise UserError(f"{what} does not match its digest (a part is smaller than its manifest says)")

    # -- removing ---------------------------------------------------------------------------------------
    def unstore_if_unused(self, tx: Transaction, digest: str) -> Callable[[], None] | None:
        """In the transaction that deleted the last row using `digest`: record the removal, committed with the
        delete; after the commit, under the lock again, remove the objects if still no row uses them."""
        if self.lock.artifact_used(tx, checked_digest(digest)):
            return None
        _begin_removal(tx, digest)

        def remove() -> None:
            with self.lock.transaction() as again:
                if self.lock.artifact_used(again, digest):  # registered again meanwhile: this machine's copy stays
                    return
                self._remove(again, digest)
            self.cache.evict(digest)

        return remove

    def _remove(self, tx: Transaction, digest: str) -> None:
        """Under the lock, after `_begin_removal` was committed: remove the manifest, then the objects of the
        artifact no other recorded artifact holds; the transaction forgets the removal and counts it, so
        registrations that looked at the store before it check the store again."""
        params = {"digest": checked_digest(digest)}
        chunks = [row["chunk"] for row in tx.execute("SELECT chunk FROM artifact_chunks WHERE digest=:digest", params)]
        tx.execute("DELETE FROM artifact_chunks WHERE digest=:digest", params)
        unused = sorted(set(chunks) - _recorded_chunks(tx, chunks))
        with self._errors("delete from"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._manifest(digest))  # first: without it the rest counts as incomplete
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(f"{self.root}/sha256/{digest}", recursive=True)  # stored before chunks
            self._remove_chunks(unused)
        tx.execute("DELETE FROM artifact_removals WHERE digest=:digest", params)
        tx.count("artifacts", "removed")

    def _remove_chunks(self, chunks: list[str]) -> None:
        for batch in _batches(chunks, 1000):  # S3 deletes up to 1,000 objects a request
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm([self._chunk_key(chunk) for chunk in batch])

    def sweep(self, older_than_s: float = 3600) -> Swept:
        """Remove objects no row uses (left by registrations killed before their commit), if older than
        `older_than_s` (a registration in flight uploads before it takes the lock), and finish the removals a
        killed delete began. Returns the digests of the artifacts removed, and the orphan chunks."""
        self.cache.sweep(is_cache=True)
        found: set[str] = set()
        with self._errors("list"):
            for folder, suffix in (("sha256", ""), ("manifests", ".json")):
                if not self.fs.exists(f"{self.root}/{folder}"):
                    continue
                for name in self.fs.ls(f"{self.root}/{folder}", detail=False):
                    digest = name.rstrip("/").rsplit("/", 1)[-1].removesuffix(suffix)
                    if _DIGEST.fullmatch(digest):
                        found.add(digest)
        now = time.time()
        aged = {digest for digest in found if now - self._modified(digest) >= older_than_s}
        begun = {row["digest"] for row in self.lock.query("SELECT digest FROM artifact_removals")}  # killed half-way
        candidates = sorted(aged | {digest for digest in begun if _DIGEST.fullmatch(str(digest))})
        with self.lock.transaction() as tx:
            unused = [digest for digest in candidates if not self.lock.artifact_used(tx, digest)]
            for digest in unused:
                _begin_removal(tx, digest)
        removed = []
        with self.lock.transaction() as tx:
            for digest in unused:
                if not self.lock.artifact_used(tx, digest):  # else registered again meanwhile
                    self._remove(tx, digest)
                    removed.append(digest)
        return Swept(removed, self._sweep_chunks(older_than_s))

    def _sweep_chunks(self, older_than_s: float) -> list[str]:
        """Remove the chunks no recorded artifact holds (of registrations killed before their commit, of removed
        orphans), if older than `older_than_s`."""
        with self._errors("list"):
            folder = f"{self.root}/chunks"
            self.fs.invalidate_cache(folder)
            listed = self.fs.find(folder, detail=True) if self.fs.exists(folder) else {}
            now = time.time()
            aged = [
                chunk
                for name, info in listed.items()
                if _DIGEST.fullmatch(chunk := name.rsplit("/", 1)[-1]) and now - self._modified_at(name, info) >= older_than_s
            ]
        if not aged:
            return []
        with self.lock.transaction() as tx:
            unused = sorted(set(aged) - _recorded_chunks(tx, aged))
            if unused:
                with self._errors("delete from"):
                    self._remove_chunks(unused)
                tx.count("artifacts", "removed")
        return unused

    def _modified(self, digest: str) -> float:
        with self._errors("list"):
            with contextlib.suppress(FileNotFoundError):
                return float(self.fs.modified(self._manifest(digest)).timestamp())
            times = [self.fs.modified(name).timestamp() for name in self.fs.find(f"{self.root}/sha256/{digest}")]
        return max(times, default=0.0)

    def _modified_at(self, name: str, info: dict[str, Any]) -> float:
        """When an object listed with `info` was last written (s3fs and adlfs name it differently)."""
        for field in ("LastModified", "last_modified"):
            if isinstance(info.get(field), datetime.datetime):
                return float(info[field].timestamp())
        return float(self.fs.modified(name).timestamp())

    # -- names ------------------------------------------------------------------------------------------
    def _key(self, digest: str, relative: str) -> str:
        """A file of an artifact stored before chunks."""
        return f"{self.root}/sha256/{digest}/{relative}"

    def _chunk_key(self, chunk: str) -> str:
        return f"{self.root}/chunks/{chunk}"

    def _manifest(self, digest: str) -> str:
        return f"{self.root}/manifests/{digest}.json"

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """A store that cannot be reached, refuses the credentials or the write: one line naming it (the storage
        library's reason scrubbed of secrets: WorkspaceUnavailable's own rule)."""
        try:
            yield
        except UserError:
            raise
        except OSError as e:  # a missing manifest is caught where it is asked for: a FileNotFoundError is the bucket's
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            why = _short(e, self.secrets)
            raise self._unavailable(doing, f"permission denied ({why})" if isinstance(e, PermissionError) else why) from None
        except Exception as e:  # botocore / azure-core errors (not OSErrors; adlfs raises RuntimeErrors): by origin
            if not _from_storage_library(e):
                raise
            raise self._unavailable(doing, _short(e, self.secrets)) from None

    def _unavailable(self, doing: str, why: str) -> WorkspaceUnavailable:
        return WorkspaceUnavailable(f"cannot {doing} the artifact store {self.display}: {why}")


class ChunkSink(Protocol):
    """What a copy hands each chunk of each file to, as soon as the chunk is written (`copy_checked`)."""

    chunk_bytes: int

    def offer(self, path: Path, offset: int, length: int, chunk: str) -> None: ...


class _Uploads:
    """The chunks of one registration, sent UPLOAD_CHUNKS_AT_ONCE at a time while the copy hashes the rest.

    Content the workspace may hold already waits for its digest instead: once a second chunk is hashed, the first
    one is looked up in `artifact_chunks`, and if a recorded artifact holds it nothing is sent before the digest
    says whether the store has the whole content (a large model registered again sends nothing). Content of one
    chunk waits too (its digest comes at once). A chunk that comes twice is sent once."""

    def __init__(self, store: ObjectStore, what: str) -> None:
        self.store = store
        self.chunk_bytes = CHUNK_BYTES
        self.progress = _Transfer(what, 0)  # its total is known once the copy is done
        self.files: dict[Path, list[str]] = {}  # a file of the copy -> its chunks, in order
        self.waiting: list[tuple[Path, int, int, str]] = []
        self.offered: set[str] = set()
        self.early: bool | None = None  # whether chunks go before the digest is known: decided at the second chunk
        self.sending: list[Future[None]] = []
        self.failed: BaseException | None = None
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Uploads:
        return self

    def __exit__(self, *_: object) -> None:
        self.cancel()

    def offer(self, path: Path, offset: int, length: int, chunk: str) -> None:
        """A chunk of `path` (a file of the copy), just written and hashed."""
        self.files.setdefault(path, []).append(chunk)
        if chunk in self.offered:
            self.progress.advance(length)
            return
        self.offered.add(chunk)
        self.waiting.append((path, offset, length, chunk))
        if self.early is None and len(self.offered) > 1:
            self.early = not self.store._recorded(self.waiting[0][3])
        if self.early:
            self._send_waiting()

    def offer_all(self, content: Path, manifest: Manifest) -> None:
        """Every chunk of a copy, sent at once."""
        self.early = True
        for relative in manifest.files:
            for offset, length, chunk in manifest.pieces(relative):
                self.offer(content / relative, offset, length, chunk)
        self.progress.known(sum(manifest.files.values()))

    def manifest(self, content: Path, size: int) -> Manifest:
        """The manifest of the copy in `content`, once it is done."""
        self.progress.known(size)
        listing = _listing(content)
        chunks = {relative: self.files.get(content / relative, []) for relative in listing.files}
        return Manifest(listing.files, listing.dirs, chunks, self.chunk_bytes)

    def finish(self) -> None:
        """Send what waits, then wait for every chunk; the first failure is raised."""
        self.early = True
        self._send_waiting()
        for sending in self.sending:
            sending.result()

    def cancel(self) -> None:
        """Send nothing more, and wait for the chunks being sent (they read the copy, which goes next)."""
        self.waiting.clear()
        for sending in self.sending:
            sending.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _send_waiting(self) -> None:
        if self.failed is not None:  # the store refused a chunk: the copy stops here, not after the whole file
            with self.store._errors("upload to"):
                raise self.failed
        if self.pool is None:
            self.pool = ThreadPoolExecutor(UPLOAD_CHUNKS_AT_ONCE, thread_name_prefix="mlmagics-upload")
        for path, offset, length, chunk in self.waiting:
            sending = self.pool.submit(self._send, path, offset, length, chunk)
            sending.add_done_callback(self._done)
            self.sending.append(sending)
        self.waiting.clear()

    def _send(self, path: Path, offset: int, length: int, chunk: str) -> None:
        self.store._put(path, self.store._chunk_key(chunk), length, offset, chunk)
        self.progress.advance(length)

    def _done(self, sending: Future[None]) -> None:
        if not sending.cancelled() and sending.exception() is not None and self.failed is None:
            self.failed = sending.exception()


class _FileSlice(io.RawIOBase):
    """`length` bytes of a file from `offset`, as a request body read while it is sent (botocore seeks back to
    its start after computing its checksum, and on a retry)."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self.file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed with the slice
        self.offset, self.length, self.position = offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = min(max(base + position, 0), self.length)
        return self.position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.length - self.position)
        if wanted <= 0:
            return 0
        got = os.preadv(self.file.fileno(), [memoryview(buffer)[:wanted]], self.offset + self.position)
        self.position += got
        return got

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self.file.close()
        super().close()


class Manifest:
    """What an artifact holds: its files (relative path -> bytes) and its folders, all under one root, and the
    chunks each file is stored in (None: stored before chunks, one object a file); checked when read from a store,
    which anyone with write access to it may have written."""

    def __init__(self, files: dict[str, int], dirs: list[str], chunks: dict[str, list[str]] | None = None,
                 chunk_bytes: int = 0) -> None:  # fmt: skip
        self.files = files
        self.dirs = dirs
        self.chunks = chunks
        self.chunk_bytes = chunk_bytes

    def folders(self) -> set[str]:
        """Every folder: those listed, and those the files are in (a manifest without `dirs` lists none)."""
        return {*self.dirs, *(a for path in self.files for a in _ancestors(path))}

    def pieces(self, relative: str) -> list[tuple[int, int, str]]:
        """(offset, bytes, chunk) of each chunk of a file, in order."""
        size, step = self.files[relative], self.chunk_bytes
        return [(i * step, min(step, size - i * step), chunk) for i, chunk in enumerate((self.chunks or {})[relative])]

    def chunk_sizes(self) -> dict[str, int]:
        """Every chunk the artifact is stored in, with its size."""
        return {chunk: size for relative in self.files for _, size, chunk in self.pieces(relative)}

    def dump(self, digest: str) -> bytes:
        data: dict[str, Any] = {"digest": digest, "files": self.files, "dirs": self.dirs, "bytes": sum(self.files.values())}
        if self.chunks is not None:
            data.update(chunk_bytes=self.chunk_bytes, chunks=self.chunks)
        return json.dumps(data, sort_keys=True).encode()

    @staticmethod
    def parse(raw: bytes, what: str) -> Manifest:
        if len(raw) > MAX_MANIFEST_BYTES:
            raise UserError(f"{what} is malformed (its manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB)")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise UserError(f"{what} is malformed (its manifest is not JSON)") from None
        files = data.get("files") if isinstance(data, dict) else None
        dirs = data.get("dirs", []) if isinstance(data, dict) else None
        if not isinstance(files, dict) or not isinstance(dirs, list) or not (files or dirs):
            raise UserError(f"{what} is malformed (its manifest names no files)")
        if len(files) + len(dirs) > MAX_COPIED_ENTRIES:
            raise UserError(f"{what} is malformed (its manifest names more than {MAX_COPIED_ENTRIES} files and folders)")
        for path, size in files.items():
            if not _relative_path(path) or type(size) is not int or size < 0:
                raise UserError(f"{what} is malformed (its manifest names {path!r:.120} with size {size!r:.40})")
        for path in dirs:
            if not _relative_path(path):
                raise UserError(f"{what} is malformed (its manifest names the folder {path!r:.120})")
        roots = {path.split("/", 1)[0] for path in [*files, *dirs]}
        clash = any(a in files for path in [*files, *dirs] for a in _ancestors(path)) or any(d in files for d in dirs)
        if len(roots) != 1 or clash:
            raise UserError(f"{what} is malformed (its manifest names {len(roots)} roots, or a file as a folder)")
        if "chunks" not in data:
            return Manifest(files, dirs)
        chunks, step = data["chunks"], data.get("chunk_bytes")
        one_list_a_file = isinstance(chunks, dict) and chunks.keys() == files.keys()
        if type(step) is not int or not 0 < step <= MAX_CHUNK_BYTES or not one_list_a_file:
            raise UserError(f"{what} is malformed (its chunks are not one list for each of its files)")
        manifest = Manifest(files, dirs, chunks, step)
        sizes: dict[str, int] = {}
        for path, names in chunks.items():
            if not isinstance(names, list) or len(names) != -(-files[path] // step):
                raise UserError(f"{what} is malformed (its manifest stores {path!r:.120} in other than {files[path]} bytes)")
            for _, size, name in manifest.pieces(path):
                if not isinstance(name, str) or not _DIGEST.fullmatch(name) or sizes.setdefault(name, size) != size:
                    raise UserError(f"{what} is malformed (its manifest names the chunk {name!r:.80} of {path!r:.120})")
        return manifest


def _listing(content: Path) -> Manifest:
    """The manifest of a staged copy (`content/<name>`): every file with its size, every folder."""
    files, dirs = {}, []
    for path in sorted(content.rglob("*")):
        relative = path.relative_to(content).as_posix()
        if path.is_dir():
            dirs.append(relative)
        elif path.is_file():
            files[relative] = path.stat().st_size
    return Manifest(files, dirs)


def _relative_path(path: object) -> bool:
    """A path of a manifest: relative, '/'-separated names, none of them '', '.', '..' or one a copy skips (a
    `__pycache__` would not be covered by the digest, and Python may run what is in it)."""
    return (
        isinstance(path, str)
        and 0 < len(path) <= 4096
        and path.count("/") < MAX_DEPTH
        and all(_safe_name(name) and name not in _SKIPPED for name in path.split("/"))
    )


def _ancestors(path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _begin_removal(tx: Transaction, digest: str) -> None:
    """Record, before any object of `digest` is removed, that they are being removed: a removal killed half-way
    leaves this row, and the next registration of the content checks the store under the lock."""
    tx.execute(
        "INSERT INTO artifact_removals (digest, since) VALUES (:digest, :since) ON CONFLICT (digest) DO NOTHING",
        {"digest": digest, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )


def _one_object(listing: Manifest) -> bool:
    """Whether the artifact is one file small enough for one request."""
    return not listing.dirs and len(listing.files) == 1 and next(iter(listing.files.values())) <= CHUNK_BYTES


def _record_chunks(tx: Transaction, digest: str, manifest: Manifest) -> None:
    """In the transaction of the row that uses the artifact: the chunks it is stored in (none, stored before)."""
    chunks = sorted(manifest.chunk_sizes()) if manifest.chunks is not None else []
    for batch in _batches(chunks, 500):
        names, params = _parameters(batch)
        values = ", ".join(f"({name}, :digest)" for name in names)
        sql = f"INSERT INTO artifact_chunks (chunk, digest) VALUES {values} ON CONFLICT DO NOTHING"
        tx.execute(sql, {"digest": digest, **params})


def _recorded_chunks(tx: Transaction, chunks: Iterable[str]) -> set[str]:
    """Those of `chunks` that a recorded artifact holds."""
    recorded: set[str] = set()
    for batch in _batches(sorted(set(chunks)), 500):
        names, params = _parameters(batch)
        rows = tx.execute(f"SELECT DISTINCT chunk FROM artifact_chunks WHERE chunk IN ({', '.join(names)})", params)
        recorded |= {row["chunk"] for row in rows}
    return recorded


def _parameters(values: list[str]) -> tuple[list[str], dict[str, str]]:
    """Bound parameters for `values` in one statement: their names (`:c0`, `:c1` …) and the values by name."""
    return [f":c{i}" for i in range(len(values))], {f"c{i}": value for i, value in enumerate(values)}


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_filesystems: dict[tuple[int, str], tuple[str, tuple[Any, str]]] = {}  # (pid, uri) -> (credentials digest, (fs, root))
_filesystems_lock = threading.Lock()


def _filesystem(uri: str, display: str) -> tuple[Any, str]:
    """The process's filesystem for `uri` (a new one costs ~0.3 s at its first call), made again when the
    environment the storage library reads its credentials and endpoint from has changed, and in a forked child
    (s3fs and adlfs refuse to run on their parent's event loop; the parent's stay in the map, unused, so that
    no finalizer of theirs runs in the child). fsspec's own instance cache is keyed by the arguments alone: it
    would keep the credentials of the first caller. One per process and URI: new credentials replace the old
    client (a rotated AWS_SESSION_TOKEN must not grow the map without end)."""
    key, environment = (os.getpid(), uri), _credentials_environment()
    with _filesystems_lock:
        made = _filesystems.get(key)
        if made is None or made[0] != environment:
            made = _filesystems[key] = (environment, _new_filesystem(uri, display))
        return made[1]


def _credentials_environment() -> str:
    """A digest of what the storage libraries read from the environment (AWS_*, AZURE_*)."""
    read = sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "AZURE_")))
    return hashlib.sha256(repr(read).encode()).hexdigest()


def _new_lock_after_fork() -> None:
    global _filesystems_lock
    _filesystems_lock = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _new_filesystem(uri: str, display: str) -> tuple[Any, str]:
    import fsspec

    protocol = uris.OBJECT_SCHEMES[uris.scheme(uri)]
    try:
        options: dict[str, Any] = {}
        if protocol == "s3":
            # no SHA-256 of each request's body for its signature: over http botocore computes one, on the event
            # loop's one thread, as it never does over https; what is stored is checked against its digest when read
            options = {"use_listings_cache": False, "config_kwargs": {"s3": {"payload_signing_enabled": False}}}
        fs, root = fsspec.core.url_to_fs(uri, skip_instance_cache=True, **options)
    except ImportError:
        extra = "s3" if protocol == "s3" else "azure"
        raise UserError(f"the artifact store {display} needs the [{extra}] extra: pip install 'mlmagics[{extra}]'") from None
    except ValueError as e:  # adlfs without an account or connection string
        secrets = tuple(uris.secrets_of(uri))
        raise WorkspaceUnavailable(f"cannot open the artifact store {display}: {_short(e, secrets)}") from None
    return fs, root.rstrip("/")


_STORAGE_LIBRARIES = {"botocore", "aiobotocore", "azure", "aiohttp", "yarl", "urllib3", "s3fs", "adlfs", "fsspec"}


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


def _short(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The error's text on one line, scrubbed of secrets before it is cut (a cut could split a secret)."""
    text = uris.scrub(" ".join(str(error).split()), secrets) or type(error).__name__
    return text[:300]


class _Transfer:
    """Progress lines for a large transfer: every 10 %, on stdout (a notebook shows them under the cell). Its
    total may come after it began (an upload's, once the copy it reads is done); threads may advance it."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done_bytes, self.shown = what, total, 0, 0
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def advance(self, n: int) -> None:
        with self.lock:
            self.done_bytes += n
            self._show()

    def known(self, total: int) -> None:
        with self.lock:
            self.total = total
            self._show()

    def _show(self) -> None:
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


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def entry_name(digest: str = "") -> str:
    """`<pid>.<host>-<random>[-<digest>]`: a staging or trash entry's name says which process made it on which
    host (a hash of its name), so a sweep on another host sharing the folder leaves it alone."""
    return f"{os.getpid()}.{_host_tag()}-{uuid.uuid4().hex}" + (f"-{digest}" if digest else "")


def owner_dead(entry_name: str, entry: Path | None = None) -> bool:
    """Whether the process that made a `<pid>[.<host>]-…` entry is gone. A process of another host cannot be
    asked: its entry counts as left behind once `entry` (when given) is older than FOREIGN_ENTRY_S."""
    owner = entry_name.split("-", 1)[0]
    pid, _, host = owner.partition(".")
    if not pid.isdigit():
        return False
    if host and host != _host_tag():
        return entry is not None and _age(entry) > FOREIGN_ENTRY_S
    return not _alive(int(pid))


def _age(entry: Path) -> float:
    """Seconds since anything at the top of `entry` (a folder, its children) last changed."""
    try:
        times = [entry.lstat().st_mtime]
        if entry.is_dir() and not entry.is_symlink():
            times += [child.lstat().st_mtime for child in entry.iterdir()]
    except OSError:
        return 0.0
    return time.time() - max(times)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- copying files in: what may leak or hang is refused ----------------------------------------------------
def copy_checked(source: Path, target: Path | None, root: Path, digest: Any = None, chunks: ChunkSink | None = None) -> int:
    """Copy the file or folder `source` to `target` (None: only hash it) hashing names and bytes into
    `digest`; returns bytes. With `chunks`, each file is hashed in chunks too, each handed to
    `chunks.offer` as soon as it is written.

    Links are followed while they stay inside `root`; a link out of it, a link loop, a FIFO,
    a device or a socket is a UserError naming it, so nothing from outside the folder is
    copied and nothing blocks. `__pycache__` and `.ipynb_checkpoints` are skipped.
    """
    return _Copy(os.path.realpath(root), digest, chunks).entry(source, target, ())


class _Copy:
    def __init__(self, root: str, digest: Any, chunks: ChunkSink | None = None) -> None:
        self.root = root
        self.digest = digest
        self.chunks = chunks
        self.entries = 0

    def entry(self, source: Path, target: Path | None, ancestors: tuple[str, ...]) -> int:
        self.entries += 1
        if self.entries > MAX_COPIED_ENTRIES:  # links can make a small folder look endless
            raise UserError(f"{source}: more than {MAX_COPIED_ENTRIES} files and folders to copy (counting links)")
        if len(ancestors) >= MAX_DEPTH:
            raise UserError(f"{source}: folders nested more than {MAX_DEPTH} deep; flatten the model folder")
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
            if target is None:
                return self.read(src, None)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as dst:
                size = self.read(src, dst, target)
        shutil.copystat(real, target)
        return size

    def read(self, src: Any, dst: Any, target: Path | None = None) -> int:
        """Read a file through, hashing it and writing it to `dst` (if any); with `self.chunks`, each chunk of
        `target` is offered once it is in the file (flushed), to be read from there."""
        sink, path = (self.chunks, target) if self.chunks is not None and target is not None else (None, Path())
        step = sink.chunk_bytes if sink is not None else 1 << 20
        size, in_chunk, chunk = 0, 0, hashlib.sha256()
        while data := src.read(min(1 << 20, step - in_chunk)):
            if self.digest is not None:
                self.digest.update(data)
            if dst is not None:
                dst.write(data)
            size += len(data)
            in_chunk = (in_chunk + len(data)) % step
            if sink is not None:
                chunk.update(data)
                if not in_chunk:
                    dst.flush()
                    sink.offer(path, size - step, step, chunk.hexdigest())
                    chunk = hashlib.sha256()
        if sink is not None and in_chunk:
            dst.flush()
            sink.offer(path, size - in_chunk, in_chunk, chunk.hexdigest())
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
