"""Reading and verifying a model version directory written by the training runtime.

`load_artifact` is the one way to turn a URI into a model: it insists on the `_COMPLETE` marker,
validates metadata.json, checks the model file's sha256 against the expected digest and the
metadata, and loads it through skops with an explicit list of trusted types (never pickle).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import skops.io as sio
from pydantic import ValidationError

from modelfactory_api.artifact import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    ArtifactMetadata,
    parse_digest,
    sha256_hex,
)

ArtifactErrorReason = Literal[
    "MissingArtifact",
    "IncompleteArtifact",
    "InvalidMetadata",
    "InvalidDigest",
    "DigestMismatch",
    "UntrustedType",
    "LoadFailed",
]

# Type names skops may construct: only these libraries' own types and functions...
TRUSTED_MODULE_ROOTS = ("sklearn", "numpy", "scipy")
# ...minus the parts of them that read or write files, compile code, or exist for tests.
DENIED_PREFIXES = (
    "numpy.load",
    "numpy.save",
    "numpy.fromfile",
    "numpy.memmap",
    "numpy.genfromtxt",
    "numpy.loadtxt",
    "numpy.lib.npyio",
    "numpy.lib.format",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "scipy.io",
    "scipy.weave",
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.utils._testing",
)


class ArtifactError(Exception):
    """The artifact cannot be served; `reason` is a CamelCase word for conditions and logs."""

    def __init__(self, reason: ArtifactErrorReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: ArtifactErrorReason = reason
        self.message = message


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    metadata: ArtifactMetadata
    uri: str
    digest: str
    trusted_types: tuple[str, ...] = field(default=())
    load_seconds: float = 0.0


def is_trusted_type(name: str) -> bool:
    root = name.split(".", 1)[0]
    if root not in TRUSTED_MODULE_ROOTS:
        return False
    return not name.startswith(DENIED_PREFIXES)


def trusted_types_for(data: bytes) -> list[str]:
    """The allow-list for this file: every type skops would not trust by default, if it is ours
    to trust; raises ArtifactError(UntrustedType) naming the first type that is not."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:
        raise ArtifactError("LoadFailed", f"model file is not a readable skops file: {e}") from e
    refused = [name for name in untrusted if not is_trusted_type(name)]
    if refused:
        raise ArtifactError(
            "UntrustedType",
            f"model file contains type(s) outside the trusted set ({', '.join(refused)}); "
            f"only {', '.join(TRUSTED_MODULE_ROOTS)} types are loaded",
        )
    return list(untrusted)


def _join(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}"


def _read(fs: Any, path: str, what: str) -> bytes:
    try:
        data: bytes = fs.cat_file(path)
    except FileNotFoundError as e:
        raise ArtifactError("MissingArtifact", f"{what} not found at {path}") from e
    except Exception as e:
        raise ArtifactError("MissingArtifact", f"cannot read {what} at {path}: {e}") from e
    return data


def load_artifact(uri: str, expected_digest: str | None) -> LoadedModel:
    """Load and verify the model version directory at `uri` (any fsspec URL or a local path).

    `expected_digest` is "sha256:<hex>" or None (then only the metadata's digest is checked).
    Raises ArtifactError with reason MissingArtifact, IncompleteArtifact, InvalidMetadata,
    InvalidDigest, DigestMismatch, UntrustedType or LoadFailed.
    """
    started = time.perf_counter()
    expected_hex: str | None = None
    if expected_digest:
        try:
            expected_hex = parse_digest(expected_digest)
        except ValueError as e:
            raise ArtifactError("InvalidDigest", str(e)) from e

    try:
        fs, root = fsspec.core.url_to_fs(uri)
    except Exception as e:
        raise ArtifactError("MissingArtifact", f"cannot open {uri}: {e}") from e
    root = root.rstrip("/")
    try:
        if not fs.isdir(root):
            raise ArtifactError("MissingArtifact", f"no model version directory at {uri}")
        complete = fs.exists(_join(root, COMPLETE_MARKER))
    except ArtifactError:
        raise
    except Exception as e:
        raise ArtifactError("MissingArtifact", f"cannot list {uri}: {e}") from e
    if not complete:
        raise ArtifactError(
            "IncompleteArtifact", f"{uri} has no {COMPLETE_MARKER} marker (still being written?)"
        )

    raw_meta = _read(fs, _join(root, METADATA_FILENAME), METADATA_FILENAME)
    try:
        metadata = ArtifactMetadata.model_validate(json.loads(raw_meta))
    except (ValueError, ValidationError) as e:
        raise ArtifactError("InvalidMetadata", f"{METADATA_FILENAME} is invalid: {e}") from e
    if not metadata.features:
        raise ArtifactError("InvalidMetadata", f"{METADATA_FILENAME} lists no features")
    if "/" in metadata.modelFile or metadata.modelFile.startswith("."):
        raise ArtifactError(
            "InvalidMetadata", f"modelFile {metadata.modelFile!r} must be a plain file name"
        )

    data = _read(fs, _join(root, metadata.modelFile), metadata.modelFile)
    actual = sha256_hex(data)
    if expected_hex is not None and actual != expected_hex:
        raise ArtifactError(
            "DigestMismatch",
            f"{metadata.modelFile} has sha256:{actual}, expected {expected_digest}",
        )
    if actual != metadata.modelSha256:
        raise ArtifactError(
            "DigestMismatch",
            f"{metadata.modelFile} has sha256:{actual}, metadata.json says "
            f"sha256:{metadata.modelSha256}",
        )

    trusted = trusted_types_for(data)
    try:
        estimator = sio.loads(data, trusted=trusted)
    except Exception as e:
        raise ArtifactError("LoadFailed", f"skops could not load {metadata.modelFile}: {e}") from e
    if not callable(getattr(estimator, "predict", None)):
        raise ArtifactError(
            "LoadFailed", f"{type(estimator).__name__} loaded from {uri} has no predict()"
        )
    return LoadedModel(
        estimator=estimator,
        metadata=metadata,
        uri=uri,
        digest=f"sha256:{actual}",
        trusted_types=tuple(trusted),
        load_seconds=time.perf_counter() - started,
    )
