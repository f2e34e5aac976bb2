"""The output of a scoring run, committed atomically.

Parts are written as the scores stream in, to `<output>/_staging/<runId>/part-NNNNN.<ext>`
(a new part every ROWS_PER_PART rows). Commit: the staging folder moves to
`<output>/data/<folder>/` (a rename on a filesystem), then `<output>/manifest.json` is written,
last (a filesystem: a temporary file and os.replace; an object store: one put). Only then are
the data folders the manifest does not list and every staging leftover (an earlier or killed
attempt) removed. Folders starting with `_` are skipped by pyarrow's dataset readers and the
manifest lists exactly the committed parts, so no reader sees a half-written or a duplicated
row whenever a run is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from modelfactory_artifacts.batch_manifest import (
    DATA_DIR,
    MANIFEST_FILENAME,
    STAGING_DIR,
    BatchManifest,
    OutputFile,
    parse_manifest,
)
from modelfactory_training.errors import SpecError

log = logging.getLogger(__name__)

ROWS_PER_PART = 1_000_000


@dataclass
class _Part:
    name: str
    path: str
    handle: Any
    writer: Any
    rows: int = 0


@dataclass
class OutputStore:
    uri: str
    run_id: str
    format: str = "parquet"
    rows_per_part: int = ROWS_PER_PART
    fs: Any = field(init=False)
    root: str = field(init=False)
    schema: pa.Schema | None = field(init=False, default=None)
    files: list[tuple[str, int]] = field(init=False, default_factory=list)  # (name, rows)
    _part: _Part | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        try:
            self.fs, root = url_to_fs(self.uri)
        except (ImportError, ValueError) as exc:
            raise SpecError(
                "UnsupportedStorage", f"output: cannot open {self.uri!r}: {exc}"
            ) from exc
        self.root = root.rstrip("/")

    def _at(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def staging(self) -> str:
        return self._at(STAGING_DIR, self.run_id)

    @property
    def ext(self) -> str:
        return "parquet" if self.format == "parquet" else "csv"

    @property
    def rows_written(self) -> int:
        return sum(r for _, r in self.files) + (self._part.rows if self._part else 0)

    # ------------------------------------------------------------------ writing
    def begin(self) -> None:
        """A fresh staging folder: whatever an earlier attempt of this run left there goes."""
        if self.fs.exists(self.staging):
            self.fs.rm(self.staging, recursive=True)
        self.fs.makedirs(self.staging, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
        elif table.schema != self.schema:
            table = self._conform(table)
        offset = 0
        while offset < table.num_rows:
            part = self._part or self._open()
            take = min(table.num_rows - offset, self.rows_per_part - part.rows)
            chunk = table.slice(offset, take)
            part.writer.write_table(chunk)
            part.rows += take
            offset += take
            if part.rows >= self.rows_per_part:
                self._close()

    def _conform(self, table: pa.Table) -> pa.Table:
        assert self.schema is not None
        try:
            return table.select(self.schema.names).cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
            changed = [
                f.name
                for f in self.schema
                if f.name not in table.column_names or table.schema.field(f.name).type != f.type
            ]
            raise SpecError(
                "SchemaMismatch",
                f"input: column(s) {', '.join(map(repr, changed))} change type between files or "
                f"rows ({self.schema} then {table.schema}): {exc}",
            ) from exc

    def _open(self) -> _Part:
        assert self.schema is not None
        name = f"part-{len(self.files):05d}.{self.ext}"
        path = f"{self.staging}/{name}"
        handle = self.fs.open(path, "wb")
        if self.format == "parquet":
            writer: Any = pq.ParquetWriter(handle, self.schema)
        else:
            writer = pacsv.CSVWriter(handle, self.schema)
        self._part = _Part(name, path, handle, writer)
        return self._part

    def _close(self) -> None:
        part = self._part
        if part is None:
            return
        part.writer.close()
        part.handle.close()
        self.files.append((part.name, part.rows))
        self._part = None

    def finish(self) -> None:
        self._close()

    def abort(self) -> None:
        """Close what is open; the staging folder stays for the next attempt to remove."""
        part = self._part
        self._part = None
        if part is not None:
            for closer in (part.writer.close, part.handle.close):
                with contextlib.suppress(Exception):
                    closer()

    # ------------------------------------------------------------------ committing
    def current(self) -> BatchManifest | None:
        try:
            return parse_manifest(self.fs.cat_file(self._at(MANIFEST_FILENAME)))
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("the committed manifest is unreadable", extra={"error": str(exc)})
            return None

    def data_folder(self) -> str:
        """The folder this run commits to: data/<runId>, or data/<runId>-N when the committed
        manifest already lists data/<runId> (the same run id run again)."""
        committed = self.current()
        taken = committed.output.folder if committed else None
        name, n = f"{DATA_DIR}/{self.run_id}", 1
        while name == taken:
            n += 1
            name = f"{DATA_DIR}/{self.run_id}-{n}"
        return name

    def commit(self, manifest_for: Any) -> BatchManifest:
        """Move the staging folder into data/, write the manifest, clean up.

        `manifest_for(folder, files)` builds the manifest once the folder's name and the
        parts' sizes are known."""
        self.finish()
        folder = self.data_folder()
        target = self._at(folder)
        if self.fs.exists(target):  # a run killed between its move and its manifest
            self.fs.rm(target, recursive=True)
        self.fs.makedirs(self._at(DATA_DIR), exist_ok=True)
        sizes = {name: self._size(f"{self.staging}/{name}") for name, _ in self.files}
        self._move(target)
        files = [
            OutputFile(path=f"{folder}/{name}", rows=rows, bytes=sizes[name])
            for name, rows in self.files
        ]
        manifest: BatchManifest = manifest_for(folder, files)
        self._put_manifest(manifest.to_json())
        self._clean(folder)
        return manifest

    def _move(self, target: str) -> None:
        """The staging folder to `target`: one rename on a file system; on an object store
        (no folders, no rename) each part is copied server-side, then the staging removed."""
        if isinstance(self.fs, LocalFileSystem):
            if not self.files:
                self.fs.makedirs(self.staging, exist_ok=True)
            os.rename(self.staging, target)
            return
        for name, _ in self.files:
            self.fs.copy(f"{self.staging}/{name}", f"{target}/{name}")
        if self.fs.exists(self.staging):
            self.fs.rm(self.staging, recursive=True)

    def _size(self, path: str) -> int:
        return int(self.fs.info(path).get("size") or 0)

    def _put_manifest(self, data: bytes) -> None:
        path = self._at(MANIFEST_FILENAME)
        if isinstance(self.fs, LocalFileSystem):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{MANIFEST_FILENAME}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(path, data)

    def _clean(self, keep: str) -> None:
        """Every data folder but the committed one, and every staging leftover."""
        keep_path = self._at(keep).rstrip("/")
        try:
            for entry in self.fs.ls(self._at(DATA_DIR), detail=False):
                if entry.rstrip("/") != keep_path and entry.rstrip("/").split("/")[-1]:
                    self.fs.rm(entry, recursive=True)
            if self.fs.exists(self._at(STAGING_DIR)):
                self.fs.rm(self._at(STAGING_DIR), recursive=True)
        except Exception as exc:  # committed already: leftovers are harmless, the next run goes
            log.warning("cannot remove old output", extra={"error": str(exc)})
