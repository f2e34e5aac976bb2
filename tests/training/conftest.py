"""Fixtures for the training runtime's tests: one local Ray for the session, safe loading."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    sha256_hex,
    types_in,
    untrusted_types,
)


class ArtifactRejected(Exception):
    pass


def load_verified(version_dir: Path) -> tuple[Any, ArtifactMetadata]:
    """Load a version the way a careful reader must: marker, digest, then only trusted types."""
    if not (version_dir / COMPLETE_MARKER).exists():
        raise ArtifactRejected(f"{version_dir} is not a complete version")
    metadata = ArtifactMetadata.model_validate_json((version_dir / METADATA_FILENAME).read_bytes())
    data = (version_dir / MODEL_FILENAME).read_bytes()
    digest = sha256_hex(data)
    if digest != metadata.modelSha256:
        raise ArtifactRejected(f"digest mismatch: file {digest}, metadata {metadata.modelSha256}")
    types = types_in(data)
    outside = untrusted_types(types)
    if outside:
        raise ArtifactRejected(f"untrusted types: {outside}")
    return sio.loads(data, trusted=sorted(types)), metadata


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for every end-to-end test; the runtime joins it instead of starting one."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    yield
    ray.shutdown()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a runtime configuration file; `spec` overrides are merged one level deep."""

    def write(
        store: Path,
        run_id: str = "run-1",
        name: str = "config.json",
        **spec: dict[str, Any],
    ) -> Path:
        base: dict[str, Any] = {
            "dataset": {"uri": "sklearn://iris"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "tuning": {"algorithm": "grid", "cvFolds": 2},
            "output": {"storageUri": f"file://{store}"},
        }
        for key, value in spec.items():
            base[key] = {**base.get(key, {}), **value}
        config = {
            "spec": base,
            "runId": run_id,
            "job": {"namespace": "ml", "name": "tj", "uid": "uid-1", "generation": 3},
        }
        path = tmp_path / name
        path.write_text(json.dumps(config))
        return path

    return write


def read_result(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture
def result_of() -> Callable[[Path], dict[str, Any]]:
    return read_result


@pytest.fixture
def verified_loader() -> Callable[[Path], tuple[Any, ArtifactMetadata]]:
    return load_verified


@pytest.fixture
def rejected_error() -> type[Exception]:
    return ArtifactRejected
