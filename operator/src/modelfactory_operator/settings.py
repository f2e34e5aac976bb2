"""Operator settings: built once at start-up from MF_* environment variables and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_charts_dir() -> Path:
    # In the image the charts sit next to the app; in a checkout they are at the repository root.
    for candidate in (Path("/app/charts"), Path(__file__).resolve().parents[3] / "charts"):
        if candidate.is_dir():
            return candidate
    return Path("charts")


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MF_", extra="ignore")

    launcher: Literal["kubernetes", "local"] = "kubernetes"
    training_image: str = "ghcr.io/modelfactory/training:0.1.0"
    serving_image: str = "ghcr.io/modelfactory/serving:0.1.0"
    # The cluster's DNS domain: a rollout's stable servers reach the other version's Service by
    # its absolute name, so a name that no longer exists is never looked up outside the cluster.
    cluster_domain: str = "cluster.local"
    charts_dir: Path = default_charts_dir()
    helm_binary: str = "helm"
    local_state_dir: Path = Path.home() / ".cache" / "modelfactory" / "local"
    # Safety net only: watch events (the resource's and its children's) drive everything; every
    # resource is also reconciled once per this period, spread over it, to catch a missed event.
    resync_seconds: float = Field(600.0, gt=0)
    # How long the answer to "is KubeRay's RayJob CRD installed?" is reused.
    crd_cache_seconds: float = 30.0
    # Helm processes at once: a burst or a resume of hundreds of resources queues behind this.
    helm_concurrency: int = Field(4, ge=1, le=64)
    # A helm call that takes longer is killed (its release is recovered on the next try).
    helm_timeout_seconds: float = Field(120.0, gt=0)
    # Backoff of a release that fails to apply: first wait, and the longest wait.
    apply_retry_base_seconds: float = Field(5.0, gt=0)
    apply_retry_max_seconds: float = Field(300.0, gt=0)
    # Tries to remove a deleted resource's release before letting the resource go anyway (its
    # children are owned by it and garbage-collected).
    delete_retries: int = Field(5, ge=1, le=100)
