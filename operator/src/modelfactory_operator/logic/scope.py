"""Which namespaces a watch covers: the operator's --namespace names and patterns."""

from __future__ import annotations

import fnmatch


def scopes(clusterwide: bool, namespaces: list[str]) -> list[str | None]:
    """One watch per literal namespace; one cluster-wide watch when any name is a pattern."""
    if clusterwide or any(set(ns) & set("*?[") for ns in namespaces):
        return [None]
    return list[str | None](sorted(set(namespaces)))


def in_scope(namespace: str, clusterwide: bool, patterns: list[str]) -> bool:
    return clusterwide or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)
