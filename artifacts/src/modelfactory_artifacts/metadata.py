"""The model artifact: layout of a version directory and the schema of its metadata.json.

Written by the training runtime, read and verified (modelfactory_artifacts.read) by the serving
runtime. A version's digest is the sha256 of its metadata.json, which records the sha256 of the
model file and of its compiled form: one digest covers both models, their features, the
reference profile and the lineage.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any, Literal
from zipfile import ZipFile

from pydantic import BaseModel, ConfigDict, Field

from modelfactory_api.trainingjob import Trigger
from modelfactory_artifacts.onnx_model import OnnxInfo
from modelfactory_artifacts.profile import ReferenceProfile

ARTIFACT_SCHEMA_VERSION = 1
MODEL_FILENAME = "model.skops"
METADATA_FILENAME = "metadata.json"
# Written last, after the model and metadata: a version directory without it is incomplete.
COMPLETE_MARKER = "_COMPLETE"
# Every class a model file may hold: what the trainer can produce, listed by
# hack/gen_trusted_types.py and reviewed. Never a function.
TRUSTED_TYPES_FILE = "skops_trusted_types.json"

TaskType = Literal["binary", "multiclass", "regression"]


class FeatureInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: str = Field(description="pandas dtype of the column in the training data.")
    kind: Literal["numeric", "categorical", "boolean"]


class TargetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    classes: list[Any] | None = Field(None, description="Class labels, for classifiers.")


class TrialRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]
    score: float | None = None
    scoreStd: float | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    # Hosts (pods, on Kubernetes) its folds ran on.
    nodes: list[str] = Field(default_factory=list)


class SourceInfo(BaseModel):
    """The TrainingJob a version came from."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    generation: int | None = None
    runId: str | None = None


class GateScores(BaseModel):
    """The promotion gate's scores, taken by the run that wrote the version: the version and
    the promoted one (the baseline) on the same held-out rows, by the same scorer."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="scikit-learn scorer name; greater is better.")
    score: float | None = Field(None, description="This version's score; none if it failed.")
    baselineVersion: int | None = Field(None, description="The promoted version, if any.", ge=1)
    baselineScore: float | None = Field(None, description="Its score; none if it failed.")
    baselineMessage: str | None = Field(None, description="Why the baseline was not scored.")


class ArtifactMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schemaVersion: int = ARTIFACT_SCHEMA_VERSION
    version: int = Field(ge=1)
    createdAt: str
    task: TaskType
    format: Literal["skops"] = "skops"
    modelFile: str = MODEL_FILENAME
    modelSha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    libraries: dict[str, str] = Field(
        description="python, scikit-learn, numpy, ray, skops versions."
    )
    features: list[FeatureInfo]
    target: TargetInfo
    estimator: str
    metric: str
    metrics: dict[str, float] = Field(
        description="cv_mean, cv_std and held-out scores (test_<metric>, ...)."
    )
    bestParams: dict[str, Any]
    trials: list[TrialRecord] = Field(description="The trials that ran, finished or failed.")
    trialsPlanned: int | None = Field(
        None,
        description=(
            "Trials the search planned; more than len(trials) when tuning.timeBudgetSeconds "
            "ran out first."
        ),
        ge=0,
    )
    profile: ReferenceProfile | None = Field(
        None,
        description="The training data's reference profile (features, target, held-out "
        "predictions, a bounded sample): what live data is compared with.",
    )
    source: SourceInfo = Field(default_factory=SourceInfo)
    # Absent from versions written before the closed loop: they still validate.
    trigger: Trigger | None = Field(None, description="Why the run was started.")
    dataDigest: str | None = Field(
        None,
        description="sha256:<hex> of the training data: its bytes, or for a prefix its object "
        "listing (path and ETag, generation or size and mtime).",
        pattern=r"^sha256:[a-f0-9]{64}$",
    )
    gate: GateScores | None = Field(None, description="Scores for the promotion gate.")
    onnx: OnnxInfo | None = Field(
        None,
        description="The compiled model (model.onnx) and its check against the skops model; "
        "absent from versions written before compilation.",
    )

    def to_json(self) -> bytes:
        """The bytes written as metadata.json; the version's digest is their sha256."""
        return self.model_dump_json(indent=2).encode()

    @property
    def digest(self) -> str:
        """The version's digest: it covers this metadata (profile included) and, through
        modelSha256, the model file."""
        return metadata_digest(self.to_json())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metadata_digest(raw: bytes) -> str:
    """A version's digest from the bytes of its metadata.json."""
    return f"sha256:{sha256_hex(raw)}"


def parse_digest(digest: str) -> str:
    """'sha256:<hex>' -> '<hex>'; raises ValueError on anything else."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"digest {digest!r} is not of the form sha256:<64 hex digits>")
    return hexpart


def version_uri(storage_uri: str, version: int) -> str:
    return f"{storage_uri.rstrip('/')}/{version}"


@cache
def trusted_types() -> frozenset[str]:
    """The allow-list of TRUSTED_TYPES_FILE: the trainer writes and the server loads by it."""
    text = resources.files("modelfactory_artifacts").joinpath(TRUSTED_TYPES_FILE).read_text()
    return frozenset(json.loads(text)["types"])


def untrusted_types(names: Iterable[str]) -> list[str]:
    """The names (from skops.io.get_untrusted_types) that the allow-list does not hold."""
    allowed = trusted_types()
    return sorted({n for n in names if n not in allowed})


def types_in(data: bytes) -> set[str]:
    """Every class and function a skops file would construct, including those skops trusts by
    default (the allow-list is ours, not skops'). Reads the file's schema and builds skops'
    audit tree only: nothing is imported or constructed. Needs skops (trainer and server)."""
    from skops.io._audit import Node, get_tree
    from skops.io._utils import read_schema

    with ZipFile(io.BytesIO(data), "r") as zf:
        schema, load_context = read_schema(zf)
        tree = get_tree(schema, load_context=load_context, trusted=None)
    seen: set[int] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, Node) and id(node) not in seen:
            seen.add(id(node))
            node.trusted = []  # trust nothing by default, so every type is reported
            stack.extend(node.children.values())
    return set(tree.get_unsafe_set())
