"""The versioned model store: `<storageUri>/<version>/`, written through fsspec.

A version counts only once its `_COMPLETE` marker exists; the marker is written last, so a run
that dies half-way leaves a directory that is never read.

Runs writing to the same store at once each get their own number: a number is taken by creating
`<version>/_CLAIM` exclusively (O_EXCL on a file system, a conditional If-None-Match write on
object stores that support it), never by looking first. A claimed number is never reused or
deleted by another run, so versions may skip a number whose run died; only a retry of the same
run picks its own unfinished claim up again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from modelfactory_api.storage_errors import access_denied_message, classify
from modelfactory_api.uris import check_uri
from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    version_uri,
)
from modelfactory_training.errors import (
    SpecError,
    StorageAccessError,
    TrainingError,
    TransientError,
)

log = logging.getLogger(__name__)


CLAIM_FILENAME = "_CLAIM"
# Numbers tried past the highest one listed before giving up (each lost race costs one).
MAX_CLAIM_ATTEMPTS = 100


def storage_failure(uri: str, exc: Exception, action: str, where: str) -> TrainingError | None:
    """The run's failure for a storage exception: StorageAccessDenied (permanent) when the
    store refused the credentials or none were found, StorageUnavailable (transient) for other
    I/O errors, None for anything else (a bug: let it propagate). `where` is "output" or
    "dataset", the part of the spec the URI comes from."""
    if classify(exc) == "AccessDenied":
        return StorageAccessError(f"{where}: {access_denied_message(uri, exc, action)}")
    if isinstance(exc, OSError):
        return TransientError("StorageUnavailable", f"{where}: cannot {action} {uri}: {exc}")
    return None


def next_version(existing: Mapping[int, bool]) -> int:
    """One above the highest version, complete or not: an incomplete one may be another run's
    version being written."""
    return max(existing, default=0) + 1


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
            check_uri(uri, "output.storageUri")
        except ValueError as exc:
            raise SpecError("InvalidStorageUri", str(exc)) from exc
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

    def reserve(self, run_id: str) -> int:
        """A version number no other run has or will get: this run's unfinished claim if a
        previous attempt left one, else the first number above the highest that it can claim."""
        existing = self.versions()
        for version in sorted((v for v, done in existing.items() if not done), reverse=True):
            if self.claimant(version) == run_id:
                log.info("resuming this run's unfinished version", extra={"version": version})
                return version
        version = next_version(existing)
        for _ in range(MAX_CLAIM_ATTEMPTS):
            if self.claim(version, run_id):
                return version
            version += 1
        raise TransientError(
            "StorageContended",
            f"output: {self.uri}: no free version number after {MAX_CLAIM_ATTEMPTS} attempts",
        )

    def claim(self, version: int, run_id: str) -> bool:
        """Create the version's claim exclusively; False when another run has it."""
        path = self._path(version, CLAIM_FILENAME)
        content = json.dumps({"runId": run_id}).encode()
        self.fs.makedirs(self._path(version), exist_ok=True)
        try:
            with self.fs.open(path, "xb") as fh:
                fh.write(content)
        except FileExistsError:
            return False
        except OSError as exc:
            # s3fs says FileExistsError only when the server names the If-None-Match condition
            # (AWS does); MinIO and others answer a bare 412, which s3fs turns into EINVAL.
            if classify(exc) == "PreconditionFailed":
                return False
            raise
        except (ValueError, NotImplementedError):
            # The file system cannot create exclusively (e.g. s3fs before 2025.7 for small
            # files, or a store without conditional writes): check, then write. Runs that
            # start their writes at the same instant may still collide there.
            log.warning(
                "storage cannot create files exclusively; version numbers are not race-free",
                extra={"uri": self.uri},
            )
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, content)
        return True

    def claimant(self, version: int) -> str | None:
        """The run id that claimed a version, if its claim is readable."""
        try:
            raw = json.loads(self.fs.cat_file(self._path(version, CLAIM_FILENAME)))
        except (OSError, ValueError):
            return None
        run_id = raw.get("runId") if isinstance(raw, dict) else None
        return run_id if isinstance(run_id, str) else None

    def write(
        self, version: int, model: bytes, metadata: ArtifactMetadata, onnx: bytes | None = None
    ) -> None:
        """Models, then metadata, then the marker: readers see all of it or none of it."""
        self.fs.makedirs(self._path(version), exist_ok=True)
        self.fs.pipe_file(self._path(version, MODEL_FILENAME), model)
        if onnx is not None and metadata.onnx is not None and metadata.onnx.file:
            self.fs.pipe_file(self._path(version, metadata.onnx.file), onnx)
        self.fs.pipe_file(
            self._path(version, METADATA_FILENAME),
            metadata.to_json(),
        )
        self.mark_complete(version, metadata)

    def mark_complete(self, version: int, metadata: ArtifactMetadata) -> None:
        marker: dict[str, Any] = {"version": version, "modelSha256": metadata.modelSha256}
        self.fs.pipe_file(self._path(version, COMPLETE_MARKER), json.dumps(marker).encode())
