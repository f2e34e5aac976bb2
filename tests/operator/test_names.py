import pytest

from modelfactory_operator.logic import names

pytestmark = pytest.mark.unit


def test_short_names_pass_through() -> None:
    assert names.dns_name("iris", "abc") == "iris-abc"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    long = "x" * 80
    a, b = names.dns_name(long, "1"), names.dns_name(long, "2")
    assert len(a) == 63 and a != b
    assert a == names.dns_name(long, "1")


def test_release_names_fit_helm() -> None:
    assert len(names.release_name("tj", "y" * 70)) <= 53


def test_run_id_changes_with_spec_and_retrain_only() -> None:
    base = names.run_id("uid", "spec1", None)
    assert base == names.run_id("uid", "spec1", None)
    assert base != names.run_id("uid", "spec2", None)
    assert base != names.run_id("uid", "spec1", "again")
