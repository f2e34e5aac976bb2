"""The kind registry: one table of what differs by kind, and statuses held to their CRDs."""

from __future__ import annotations

import pytest

from modelfactory_operator.logic import kinds

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("component", "plural"),
    [("training", "trainingjobs"), ("serving", "modelservices"), ("batch", "batchpredictions")],
)
def test_a_child_finds_its_parent_by_its_labels(component: str, plural: str) -> None:
    labels = {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": "iris"}
    found = kinds.parent_of(labels)
    assert found is not None and found[0].plural == plural and found[1] == "iris"


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"app.kubernetes.io/component": "training"},
        {"app.kubernetes.io/component": "x", "app.kubernetes.io/instance": "a"},
    ],
)
def test_labels_of_no_kind_have_no_parent(labels: dict[str, str]) -> None:
    assert kinds.parent_of(labels) is None


def test_kinds_are_one_table() -> None:
    assert {k.prefix for k in kinds.KINDS} == {"tj", "msvc", "bp"}
    assert [k.kind for k in kinds.RUN_KINDS] == ["TrainingJob", "BatchPrediction"]
    assert all(k.entrypoint and k.app for k in kinds.RUN_KINDS)
    assert kinds.of("modelservices") is kinds.MODELSERVICE


@pytest.mark.parametrize("kind", kinds.KINDS, ids=lambda k: k.kind)
def test_a_status_field_the_crd_does_not_declare_is_refused(kind: kinds.Kind) -> None:
    kinds.checked(kind, {"phase": "Pending", "appliedHash": "abc", "conditions": []})
    with pytest.raises(kinds.UndeclaredStatus, match="notDeclared"):
        kinds.checked(kind, {"phase": "Pending", "notDeclared": 1})
    with pytest.raises(kinds.UndeclaredStatus, match="phase"):
        kinds.checked(kind, {"phase": "Sleeping"})


def test_fields_an_older_version_wrote_are_left_behind_when_read() -> None:
    read = {"phase": "Running", "somethingOld": {"x": 1}}
    assert kinds.declared(kinds.TRAININGJOB, read) == {"phase": "Running"}
