"""Hostile bodies against a real server process: each one refused with a 4xx, none raising the
server's peak memory (VmHWM) by more than a few MB."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Artifact, Server

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def strings(n: int, long: int) -> list[str]:
    return ["a"] * (n - 1) + ["b" * long]


def v2(data: Any, shape: list[int], datatype: str = "FP64") -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}


# ~50 KB and ~500 KB: 2,499 one-character strings and one long one (and ten times that).
HOSTILE = {
    "v2-fp64-strings-50k": v2(strings(2500, 40_000), [625, 4]),
    "v2-fp64-strings-500k": v2(strings(25_000, 400_000), [6250, 4]),
    "v2-bytes-strings-500k": v2(strings(25_000, 400_000), [6250, 4], "BYTES"),
    "v2-nested-strings-500k": v2([strings(4, 100_000)] * 4, [4, 4]),
    "v1-instances-500k": {"instances": [strings(4, 100_000)] * 4},
    "v1-dict-rows-500k": {
        "instances": [dict(zip(["x0", "x1", "x2", "x3"], strings(4, 100_000), strict=True))] * 4
    },
    "v1-inputs-columns-500k": {"inputs": {f"x{i}": strings(4, 100_000) for i in range(4)}},
}


@pytest.fixture(scope="module")
def server(module_server: Callable[..., Server], artifacts: dict[str, Artifact]) -> Server:
    art = artifacts["mixed"]
    return module_server("churn", art.uri, art.digest, max_body_bytes=2 * MB)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_body_is_refused_without_memory_growth(server: Server, name: str) -> None:
    body = json.dumps(HOSTILE[name]).encode()
    path = "/v1/models/churn:predict" if name.startswith("v1") else "/v2/models/churn/infer"
    before = peak_rss(server.proc.pid)
    r = httpx.post(server.url + path, content=body, timeout=60)
    growth = peak_rss(server.proc.pid) - before
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert growth < 20 * MB, f"{name}: peak RSS grew by {growth / MB:.1f} MB"
