"""The data digest: which data a run read, as sha256:<hex>, recorded in the artifact and result.

- One file: sha256 over its bytes as stored (compressed files are hashed compressed). It is
  streamed in chunks, never held whole; a CSV is hashed while the parser reads it
  (`HashingReader`), other formats in a second streamed pass.
- A directory or object-store prefix (a partitioned Parquet dataset): sha256 over the sorted
  list of (relative path, object identity), without reading the objects. The identity is the
  ETag on S3 (a content hash for single-part uploads), the generation on GCS (changes on every
  write), and size plus modification time on a filesystem or anything else.
- A bundled scikit-learn dataset: sha256 over the loaded frame's column names and row hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

CHUNK_BYTES = 1 << 20


def _digest(hasher: Any) -> str:
    return f"sha256:{hasher.hexdigest()}"


def stream_digest(fh: Any, chunk_bytes: int = CHUNK_BYTES) -> str:
    """sha256 of everything `fh` yields from its position to its end, one chunk at a time."""
    hasher = hashlib.sha256()
    while chunk := fh.read(chunk_bytes):
        hasher.update(chunk)
    return _digest(hasher)


def file_digest(fs: Any, path: str, chunk_bytes: int = CHUNK_BYTES) -> str:
    with fs.open(path, "rb") as fh:
        return stream_digest(fh, chunk_bytes)


def object_identity(info: Mapping[str, Any]) -> str:
    """What identifies one object's content, from fsspec `info`/`find(detail=True)`: the ETag
    (s3fs), else the generation (gcsfs), else size and modification time (local, others)."""
    for key in ("ETag", "etag"):
        if info.get(key):
            return f"etag:{str(info[key]).strip(chr(34))}"
    if info.get("generation"):
        return f"generation:{info['generation']}"
    mtime = next(
        (info[k] for k in ("mtime", "LastModified", "last_modified", "updated") if info.get(k)),
        None,
    )
    return f"size:{info.get('size')},mtime:{mtime}"


def manifest_digest(entries: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (path, identity) pairs: the same objects give the same digest in
    whatever order they are listed."""
    ordered = sorted(entries)
    return _digest(hashlib.sha256(json.dumps(ordered, separators=(",", ":")).encode()))


def prefix_digest(fs: Any, path: str) -> str:
    """The manifest digest of every object under `path`, named relative to it."""
    root = path.rstrip("/")
    listing: dict[str, Any] = fs.find(root, detail=True)
    return manifest_digest(
        (name[len(root) :].lstrip("/"), object_identity(info))
        for name, info in listing.items()
        if info.get("type", "file") != "directory"
    )


def frame_digest(frame: pd.DataFrame) -> str:
    """Content digest of an in-memory frame (the bundled datasets, which have no file)."""
    hasher = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return _digest(hasher)


class HashingReader:
    """A read-only file wrapper that hashes the bytes a parser reads through it.

    Bytes are hashed once, in file order: a read that overlaps what is hashed adds only the new
    part, and a seek past the hashed part breaks the chain (then `digest` returns None and the
    caller hashes the file in a second pass). `finish` hashes whatever the parser left unread.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._hasher = hashlib.sha256()
        self._hashed = 0
        self._broken = False

    def read(self, size: int = -1) -> bytes:
        start = self._raw.tell()
        data: bytes = self._raw.read(size)
        self._take(start, data)
        return data

    def _take(self, start: int, data: bytes) -> None:
        if self._broken or start + len(data) <= self._hashed:
            return
        if start > self._hashed:
            self._broken = True
            return
        self._hasher.update(memoryview(data)[self._hashed - start :])
        self._hashed = start + len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self._raw.tell())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._raw.seekable())

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def close(self) -> None:
        # The parser's close; the opener closes the underlying file after `finish`.
        return None

    def finish(self, chunk_bytes: int = CHUNK_BYTES) -> str | None:
        """The digest of the whole file, reading the rest the parser did not; None when the
        reads skipped bytes."""
        if self._broken:
            return None
        self._raw.seek(self._hashed)
        while chunk := self._raw.read(chunk_bytes):
            self._take(self._hashed, chunk)
        return _digest(self._hasher)
