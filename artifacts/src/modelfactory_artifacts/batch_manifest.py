"""The manifest of a BatchPrediction's output: the one home of its format.

A scoring run (modelfactory_training.batch) writes its parts to `<output>/_staging/<runId>/`,
moves the folder to `<output>/data/<folder>/` and then writes `<output>/manifest.json`, last:
the manifest is the commit point. A reader trusts only the files the manifest lists (folders
whose names start with `_` are skipped by pyarrow's dataset readers too), so a run killed at
any moment never shows half its rows, or twice as many.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import fsspec
from pydantic import BaseModel, ConfigDict, Field

BATCH_MANIFEST_SCHEMA = 1
MANIFEST_FILENAME = "manifest.json"
DATA_DIR = "data"
STAGING_DIR = "_staging"
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "proba_"


def probability_column(label: Any) -> str:
    """The output column holding the probability of class `label`."""
    return f"{PROBABILITY_PREFIX}{label}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManifestModel(_Strict):
    uri: str = Field(description="The model version directory.")
    digest: str = Field(description="sha256:<hex> of its metadata.json, verified on load.")
    version: int | None = Field(None, description="Version number, when known.")


class InputFile(_Strict):
    path: str = Field(description="The file, as a URI.")
    size: int = Field(ge=0, description="Bytes.")
    etag: str | None = Field(None, description="The store's ETag or generation, if it has one.")
    sha256: str | None = Field(None, description="sha256:<hex> of the bytes, when no ETag.")


class ManifestInput(_Strict):
    uri: str
    format: Literal["csv", "parquet"]
    carry: list[str] = Field(default_factory=list, description="Columns copied through.")
    files: list[InputFile]


class OutputFile(_Strict):
    path: str = Field(description="Relative to the output URI: data/<folder>/part-NNNNN.<ext>.")
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)


class ManifestOutput(_Strict):
    uri: str
    format: Literal["parquet", "csv"]
    folder: str = Field(description="The committed data folder, relative to the output URI.")
    columns: list[str] = Field(description="Columns of every part, in order.")
    files: list[OutputFile]


class ManifestRows(_Strict):
    read: int = Field(ge=0)
    written: int = Field(ge=0)


class BatchManifest(_Strict):
    schemaVersion: int = BATCH_MANIFEST_SCHEMA
    runId: str
    model: ManifestModel
    runtime: Literal["sklearn", "onnx"] = Field(description="What ran the model.")
    input: ManifestInput
    output: ManifestOutput
    rows: ManifestRows
    startedAt: str
    finishedAt: str
    seconds: float
    code: dict[str, str] = Field(
        description="Versions: modelfactory (the batch runtime), python, ray, scikit-learn, "
        "pyarrow, and onnxruntime when it ran the model."
    )
    drift: dict[str, Any] | None = Field(
        None,
        description="Drift of the input against the model's reference profile "
        "(modelfactory_artifacts.drift's report), none when the version has no profile.",
    )

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    def file_uris(self) -> list[str]:
        """Every committed part, as a URI."""
        root = self.output.uri.rstrip("/")
        return [f"{root}/{f.path}" for f in self.output.files]


def manifest_uri(output_uri: str) -> str:
    return f"{output_uri.rstrip('/')}/{MANIFEST_FILENAME}"


def parse_manifest(data: bytes | str) -> BatchManifest:
    return BatchManifest.model_validate(json.loads(data))


def read_manifest(output_uri: str) -> BatchManifest | None:
    """The committed manifest under `output_uri`, or None when nothing was committed there."""
    fs, path = fsspec.core.url_to_fs(manifest_uri(output_uri))
    try:
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return parse_manifest(data)
