"""hack/images.py's pure parts: tags follow the inputs, sizes read as buildah prints them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import images

pytestmark = pytest.mark.unit


def test_tags_change_with_any_input() -> None:
    assert images.digest("base", "a") == images.digest("base", "a")
    assert images.digest("base", "a") != images.digest("base", "b")
    assert images.digest("ab", "c") != images.digest("a", "bc")


def test_the_build_context_hash_covers_the_dockerfile_and_constraints() -> None:
    assert {"Dockerfile", "constraints.txt", ".dockerignore"} <= set(images.CONTEXT)
    assert len(images.tree_digest(images.CONTEXT)) == 16


@pytest.mark.parametrize(
    ("text", "mb"), [("1.29 GB", 1290.0), ("660 MB", 660.0), ("812 kB", 0.812), ("12 B", 0.000012)]
)
def test_sizes_as_buildah_prints_them(text: str, mb: float) -> None:
    assert images.parse_size(text) == pytest.approx(mb)
