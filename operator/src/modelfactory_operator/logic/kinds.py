"""The kinds the operator reconciles, in one table: what each is called, which label component
its children carry, the prefix of its release (and of its local run folder), whether it starts
runs, and the status model its status must validate against. Everything that differs by kind
looks it up here instead of keeping a table of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelfactory_api.base import ApiModel
from modelfactory_api.batchprediction import (
    BATCHPREDICTION_KIND,
    BATCHPREDICTION_PLURAL,
    BatchPredictionStatus,
)
from modelfactory_api.modelservice import MODELSERVICE_KIND, MODELSERVICE_PLURAL, ModelServiceStatus
from modelfactory_api.trainingjob import TRAININGJOB_KIND, TRAININGJOB_PLURAL, TrainingJobStatus


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    # app.kubernetes.io/component of every child: how a child's event finds its parent.
    component: str
    # Release names (and local run folders) are <prefix>-<name>.
    prefix: str
    # A kind that starts runs (a Job, a RayJob or a local process that reports a result).
    runs: bool
    status: type[ApiModel]
    # The run's process and the label name of its children (kinds that start runs).
    entrypoint: str = ""
    app: str = ""


TRAININGJOB = Kind(
    TRAININGJOB_KIND,
    TRAININGJOB_PLURAL,
    "training",
    "tj",
    True,
    TrainingJobStatus,
    "modelfactory-train",
    "modelfactory-training",
)
MODELSERVICE = Kind(
    MODELSERVICE_KIND, MODELSERVICE_PLURAL, "serving", "msvc", False, ModelServiceStatus
)
BATCHPREDICTION = Kind(
    BATCHPREDICTION_KIND,
    BATCHPREDICTION_PLURAL,
    "batch",
    "bp",
    True,
    BatchPredictionStatus,
    "modelfactory-batch",
    "modelfactory-batch",
)
KINDS: tuple[Kind, ...] = (TRAININGJOB, MODELSERVICE, BATCHPREDICTION)
RUN_KINDS: tuple[Kind, ...] = tuple(k for k in KINDS if k.runs)
BY_PLURAL = {k.plural: k for k in KINDS}
BY_COMPONENT = {k.component: k for k in KINDS}


def of(plural: str) -> Kind:
    return BY_PLURAL[plural]


def parent_of(labels: dict[str, str]) -> tuple[Kind, str] | None:
    """The resource a child belongs to, by its component and instance labels."""
    kind = BY_COMPONENT.get(labels.get("app.kubernetes.io/component", ""))
    instance = labels.get("app.kubernetes.io/instance")
    if kind is None or not instance:
        return None
    return kind, instance


class UndeclaredStatus(ValueError):
    """A status a decision wrote that its kind's status model (and so its CRD) does not
    declare: the API server would drop it silently."""


def declared(kind: Kind, status: dict[str, Any]) -> dict[str, Any]:
    """A status as read, without top-level fields the kind no longer declares (written by an
    older version): a decision starts from what the CRD holds."""
    fields = kind.status.model_fields
    return {k: v for k, v in status.items() if k in fields}


def checked(kind: Kind, status: dict[str, Any]) -> dict[str, Any]:
    """`status` unchanged, once it validates against the kind's status model."""
    try:
        kind.status.model_validate(status)
    except ValidationError as exc:
        raise UndeclaredStatus(f"{kind.kind} status does not match its CRD: {exc}") from exc
    return status
