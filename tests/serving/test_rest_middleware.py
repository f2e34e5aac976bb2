"""Generated request ids: 32 hex digits, unique within a process and across processes."""

from __future__ import annotations

import pytest

from modelfactory_serving.rest.middleware import RequestIds

pytestmark = pytest.mark.unit


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds()
    seen = [ids.next() for _ in range(10_000)]
    assert len(set(seen)) == len(seen)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in seen)


def test_two_processes_do_not_share_a_prefix() -> None:
    assert RequestIds().next()[:16] != RequestIds().next()[:16]
