"""constraints.txt pins what a model artifact depends on, for the training and serving images
alike, and the Ray of a RayJob's every process: exactly, and to what the tests here run with."""

from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
PINNED = {
    "numpy",
    "pandas",
    "ray",
    "scikit-learn",
    "scipy",
    "skops",
    "fsspec",
    "gcsfs",
    "s3fs",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "aiohttp",
}


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            found[name.strip().lower()] = version.strip()
    return found


def test_every_artifact_and_storage_library_is_pinned_exactly() -> None:
    assert set(pins()) == PINNED


def test_pins_are_what_the_tests_run_with() -> None:
    for name, version in pins().items():
        assert metadata.version(name) == version, name


def test_the_ray_cluster_declares_the_images_ray() -> None:
    # A RayJob's head, workers and driver run one Ray: the image's, which the chart declares.
    from modelfactory_api.runtime import RAY_VERSION

    values = (ROOT / "charts" / "training-job" / "values.yaml").read_text()
    assert pins()["ray"] == RAY_VERSION
    assert f'version: "{RAY_VERSION}"' in values
