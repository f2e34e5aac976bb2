"""Fixtures of the chart tests: the helm binary."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_helpers import Helm, find_helm


@pytest.fixture(scope="session")
def helm() -> Iterator[Helm]:
    path = find_helm()
    if path is None:
        pytest.fail(
            "helm is missing: build it with `python3 hack/cluster.py build` (it lands in "
            "~/.cache/modelfactory/bin/helm-<version>/helm) or put helm on PATH",
            pytrace=False,
        )
    yield Helm(path)
