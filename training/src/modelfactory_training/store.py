"""The versioned model store: `<storageUri>/<version>/`, written through fsspec.

A version counts only once its `_COMPLETE` marker exists; the marker is written last, so a run
that dies half-way leaves a directory that is never read and is reused by the next run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from modelfactory_api.artifact import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    version_uri,
)
from modelfactory_training.errors import TransientError

log = logging.getLogger(__name__)


def next_version(existing: Mapping[int, bool]) -> int:
    """One above the highest complete version; incomplete directories do not count."""
    complete = [v for v, done in existing.items() if done]
    return max(complete, default=0) + 1


def parse_version(name: str) -> int | None:
    return int(name) if name.isdigit() and not name.startswith("0") else None


@dataclass
class ModelStore:
    uri: str
    fs: AbstractFileSystem
    root: str

    @classmethod
    def open(cls, uri: str) -> ModelStore:
        try:
            fs, root = url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            raise TransientError("StorageUnavailable", f"output: cannot open {uri}: {exc}") from exc
        return cls(uri=uri, fs=fs, root=root.rstrip("/"))

    def _path(self, version: int, name: str | None = None) -> str:
        base = f"{self.root}/{version}"
        return base if name is None else f"{base}/{name}"

    def version_uri(self, version: int) -> str:
        return version_uri(self.uri, version)

    def versions(self) -> dict[int, bool]:
        """Every numbered directory and whether it is complete."""
        try:
            if not self.fs.exists(self.root):
                return {}
            entries = self.fs.ls(self.root, detail=False, refresh=True)
        except FileNotFoundError:
            return {}
        found: dict[int, bool] = {}
        for entry in entries:
            version = parse_version(str(entry).rstrip("/").rsplit("/", 1)[-1])
            if version is not None:
                found[version] = self.fs.exists(self._path(version, COMPLETE_MARKER))
        return found

    def read_metadata(self, version: int) -> ArtifactMetadata:
        raw = self.fs.cat_file(self._path(version, METADATA_FILENAME))
        return ArtifactMetadata.model_validate_json(raw)

    def find_run(self, run_id: str) -> ArtifactMetadata | None:
        """The complete version a run already wrote, if any (so a restarted run is a no-op)."""
        for version, complete in sorted(self.versions().items(), reverse=True):
            if not complete:
                continue
            try:
                metadata = self.read_metadata(version)
            except Exception as exc:
                log.warning("unreadable metadata", extra={"version": version, "error": str(exc)})
                continue
            if metadata.source.runId == run_id:
                return metadata
        return None

    def reserve(self) -> int:
        """The number the next version gets, with any half-written directory of it removed."""
        version = next_version(self.versions())
        path = self._path(version)
        if self.fs.exists(path):
            log.info("removing incomplete version", extra={"version": version})
            self.fs.rm(path, recursive=True)
        return version

    def write(self, version: int, model: bytes, metadata: ArtifactMetadata) -> None:
        """Model, then metadata, then the marker: readers see all of it or none of it."""
        self.fs.makedirs(self._path(version), exist_ok=True)
        self.fs.pipe_file(self._path(version, MODEL_FILENAME), model)
        self.fs.pipe_file(
            self._path(version, METADATA_FILENAME),
            metadata.model_dump_json(indent=2).encode(),
        )
        self.mark_complete(version, metadata)

    def mark_complete(self, version: int, metadata: ArtifactMetadata) -> None:
        marker: dict[str, Any] = {"version": version, "modelSha256": metadata.modelSha256}
        self.fs.pipe_file(self._path(version, COMPLETE_MARKER), json.dumps(marker).encode())
