from __future__ import annotations

import pytest

from modelfactory_operator.logic.scope import in_scope, scopes

pytestmark = pytest.mark.unit


def test_literal_namespaces_get_one_watch_each() -> None:
    assert scopes(False, ["b", "a", "b"]) == ["a", "b"]


def test_patterns_or_clusterwide_get_one_cluster_watch() -> None:
    assert scopes(False, ["a", "t-*"]) == [None]
    assert scopes(True, []) == [None]


def test_in_scope_matches_patterns() -> None:
    assert in_scope("t-123", False, ["t-*"])
    assert not in_scope("kube-system", False, ["t-*"])
    assert in_scope("anything", True, [])
