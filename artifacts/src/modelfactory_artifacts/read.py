"""Reading and verifying a model version directory written by the training runtime.

`load_artifact` is the one way to turn a URI into a model: it insists on the `_COMPLETE` marker,
checks metadata.json's bytes against the expected digest, validates them, checks the model file
against the sha256 they record, loads it through skops trusting only the allow-list of what the
trainer produces (never pickle), and checks that the metadata's features are the ones the model
was fitted on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import skops.io as sio
from pydantic import ValidationError

from modelfactory_api.storage_errors import access_denied_message, classify
from modelfactory_api.uris import check_uri
from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    ArtifactMetadata,
    metadata_digest,
    parse_digest,
    sha256_hex,
    types_in,
    untrusted_types,
)

ArtifactErrorReason = Literal[
    "InvalidUri",
    "MissingArtifact",
    "StorageAccessDenied",
    "IncompleteArtifact",
    "InvalidMetadata",
    "InvalidDigest",
    "DigestMismatch",
    "UntrustedType",
    "FeatureMismatch",
    "LoadFailed",
    "OnnxUnavailable",
]


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
    onnx: bytes | None = None  # the verified compiled model, when asked for and present


def trusted_types_for(data: bytes) -> list[str]:
    """The types this file holds, if every one is on the allow-list of what the trainer
    produces; raises ArtifactError(UntrustedType) naming those that are not."""
    try:
        needed = types_in(data)
    except Exception as e:
        raise ArtifactError("LoadFailed", f"model file is not a readable skops file: {e}") from e
    refused = untrusted_types(needed)
    if refused:
        raise ArtifactError(
            "UntrustedType",
            f"model file holds type(s) outside the allow-list of what the trainer produces: "
            f"{', '.join(refused)}",
        )
    return sorted(needed)


def _names(names: list[str], shown: int = 20) -> str:
    if len(names) <= shown:
        return repr(names)
    return f"{repr(names[:shown])[:-1]}, ... ({len(names) - shown} more)]"


def check_features(estimator: Any, metadata: ArtifactMetadata) -> None:
    """The metadata's feature list must be the one the model was fitted on (a writer's mistake
    the digest cannot see) (names and order when the model records them, the count always)."""
    listed = [f.name for f in metadata.features]
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None:
        names = [str(n) for n in fitted]
        if names != listed:
            pairs = enumerate(zip(names, listed, strict=False))
            at = next((i for i, (a, b) in pairs if a != b), None)
            where = f" (first difference at position {at})" if at is not None else ""
            raise ArtifactError(
                "FeatureMismatch",
                f"the model was fitted on features {_names(names)} but {METADATA_FILENAME} "
                f"lists {_names(listed)}{where}",
            )
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(listed):
        raise ArtifactError(
            "FeatureMismatch",
            f"the model was fitted on {int(n_in)} features but {METADATA_FILENAME} lists "
            f"{len(listed)}",
        )


def _join(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}"


def storage_error(uri: str, e: Exception, fallback: str) -> ArtifactError:
    """StorageAccessDenied when the store refused the credentials (or found none), else
    MissingArtifact with `fallback`: a wrong Secret must not read as a missing model."""
    if classify(e) == "AccessDenied":
        return ArtifactError("StorageAccessDenied", access_denied_message(uri, e))
    return ArtifactError("MissingArtifact", fallback)


def _read(fs: Any, path: str, what: str, uri: str) -> bytes:
    try:
        data: bytes = fs.cat_file(path)
    except FileNotFoundError as e:
        raise ArtifactError("MissingArtifact", f"{what} not found at {path}") from e
    except Exception as e:
        raise storage_error(_join(uri, what), e, f"cannot read {what} at {path}: {e}") from e
    return data


def _read_onnx(fs: Any, root: str, metadata: ArtifactMetadata, uri: str) -> bytes | None:
    """model.onnx's bytes if the metadata records a verified one, checked against its sha256."""
    info = metadata.onnx
    if info is None or not info.verified or info.file is None:
        return None
    if "/" in info.file or info.file.startswith("."):
        raise ArtifactError("InvalidMetadata", f"onnx.file {info.file!r} must be a plain file name")
    data = _read(fs, _join(root, info.file), info.file, uri)
    actual = sha256_hex(data)
    if actual != info.sha256:
        raise ArtifactError(
            "DigestMismatch",
            f"{info.file} has sha256:{actual}, {METADATA_FILENAME} says sha256:{info.sha256}",
        )
    return data


def load_artifact(uri: str, expected_digest: str | None, *, with_onnx: bool = False) -> LoadedModel:
    """Load and verify the model version directory at `uri` (any fsspec URL or a local path).

    `expected_digest` is "sha256:<hex>" of metadata.json, or None (then only the model files
    are checked against the sha256 the metadata records). `with_onnx` also reads the verified
    compiled model, if the version has one.
    Raises ArtifactError with reason InvalidUri, MissingArtifact, StorageAccessDenied,
    IncompleteArtifact, InvalidMetadata, InvalidDigest, DigestMismatch, UntrustedType,
    FeatureMismatch or LoadFailed.
    """
    started = time.perf_counter()
    try:
        check_uri(uri, "model_uri (MF_MODEL_URI)")
    except ValueError as e:
        raise ArtifactError("InvalidUri", str(e)) from e
    expected_hex: str | None = None
    if expected_digest:
        try:
            expected_hex = parse_digest(expected_digest)
        except ValueError as e:
            raise ArtifactError("InvalidDigest", str(e)) from e

    try:
        fs, root = fsspec.core.url_to_fs(uri)
    except Exception as e:
        raise storage_error(uri, e, f"cannot open {uri}: {e}") from e
    root = root.rstrip("/")
    try:
        if not fs.isdir(root):
            raise ArtifactError("MissingArtifact", f"no model version directory at {uri}")
        complete = fs.exists(_join(root, COMPLETE_MARKER))
    except ArtifactError:
        raise
    except Exception as e:
        raise storage_error(uri, e, f"cannot list {uri}: {e}") from e
    if not complete:
        raise ArtifactError(
            "IncompleteArtifact", f"{uri} has no {COMPLETE_MARKER} marker (still being written?)"
        )

    raw_meta = _read(fs, _join(root, METADATA_FILENAME), METADATA_FILENAME, uri)
    digest = metadata_digest(raw_meta)
    if expected_hex is not None and digest != f"sha256:{expected_hex}":
        raise ArtifactError(
            "DigestMismatch", f"{METADATA_FILENAME} has {digest}, expected {expected_digest}"
        )
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

    data = _read(fs, _join(root, metadata.modelFile), metadata.modelFile, uri)
    actual = sha256_hex(data)
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
    check_features(estimator, metadata)
    onnx = _read_onnx(fs, root, metadata, uri) if with_onnx else None
    return LoadedModel(
        estimator=estimator,
        metadata=metadata,
        uri=uri,
        digest=digest,
        trusted_types=tuple(trusted),
        load_seconds=time.perf_counter() - started,
        onnx=onnx,
    )
