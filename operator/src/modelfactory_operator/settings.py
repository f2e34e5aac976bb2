"""Operator settings: built once at start-up from MF_* environment variables and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    charts_dir: Path = default_charts_dir()
    helm_binary: str = "helm"
    local_state_dir: Path = Path.home() / ".cache" / "modelfactory" / "local"
    # Safety net only: children's watch events drive status; this catches a missed event.
    resync_seconds: float = 120.0
    # How long the answer to "is KubeRay's RayJob CRD installed?" is reused.
    crd_cache_seconds: float = 30.0
