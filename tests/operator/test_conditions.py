import pytest

from modelfactory_operator.logic import conditions as cond
from modelfactory_operator.logic import runs

pytestmark = pytest.mark.unit


def test_transition_time_moves_only_on_status_change() -> None:
    c = cond.set_condition([], "Ready", False, "NoModelYet", "", 1, "t1")
    c = cond.set_condition(c, "Ready", False, "StillNothing", "", 2, "t2")
    assert c[0]["lastTransitionTime"] == "t1" and c[0]["reason"] == "StillNothing"
    c = cond.set_condition(c, "Ready", True, "ModelAvailable", "", 2, "t3")
    assert c[0]["lastTransitionTime"] == "t3"


def test_phase_is_derived_from_conditions() -> None:
    c = cond.set_condition([], "Running", True, "Training", "", 1, "t")
    assert runs.phase(c) == "Running"
    c = cond.set_condition(c, "Failed", True, "BadData", "", 1, "t")
    assert runs.phase(c) == "Failed"
    assert cond.modelservice_phase([]) == "Pending"


def test_transitions_lists_changed_conditions() -> None:
    before = cond.set_condition([], "Ready", False, "A", "", 1, "t")
    after = cond.set_condition(before, "Ready", True, "B", "", 1, "t")
    assert [c["reason"] for c in cond.transitions(before, after)] == ["B"]
    assert cond.transitions(after, after) == []
