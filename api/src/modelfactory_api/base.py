"""Shared building blocks of Model Factory's API types."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

# Patterns shared by several fields.
CPU_QUANTITY = r"^[0-9]+(\.[0-9]+)?m?$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
STORAGE_URI = r"^(file://.+|s3://.+|gs://.+|pvc://[a-z0-9][-a-z0-9.]*/.+|/.+)$"


class ApiModel(BaseModel):
    """Strict about unknown fields: a typo in a manifest is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(ApiModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    lastTransitionTime: str = Field(description="When the status last changed (RFC 3339).")
    observedGeneration: int | None = Field(
        None, description="Generation of the resource this condition was set for."
    )


def cel(*rules: tuple[str, str]) -> JsonDict:
    """CEL rules the API server enforces; the pydantic validators enforce the same in Python."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}
