"""The status patch: a merge patch that also removes what a nested object lost."""

from __future__ import annotations

import pytest

from modelfactory_operator.logic.status_patch import status_patch

pytestmark = pytest.mark.unit


def test_nested_keys_that_went_away_are_sent_as_null() -> None:
    old = {
        "phase": "Ready",
        "rollout": {"phase": "Promoting", "candidate": {"version": 2}, "stable": {"version": 1}},
        "kopf": {"x": 1},
    }
    new = {"phase": "Ready", "rollout": {"phase": "Promoted", "stable": {"version": 2}}}
    assert status_patch(old, new) == {
        "rollout": {"phase": "Promoted", "candidate": None, "stable": {"version": 2}}
    }


def test_nothing_changed_is_an_empty_patch() -> None:
    status = {"phase": "Ready", "rollout": {"phase": "Stable"}, "traffic": [{"weight": 100}]}
    assert status_patch(status, {**status, "url": None}) == {}
    assert status_patch({"a": 1, "b": 2}, {"a": 1}) == {"b": None}
