"""The CPUs a server may use come from its cgroup's limit, never the node's count."""

import pytest

from modelfactory_serving.cpus import cpu_budget, cpus_from_cpu_max, threads_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "affinity", "cpus"),
    [
        ("200000 100000\n", 8, 2),  # limits.cpu: 2
        ("150000 100000", 8, 2),  # 1.5 CPUs: two threads may run
        ("50000 100000", 8, 1),  # 500m: at least one
        ("max 100000", 8, 8),  # no limit: the CPUs it may run on
        ("800000 100000", 2, 2),  # never more than the affinity allows
        ("", 4, 4),
        ("garbage here", 4, 4),
        ("-1 100000", 4, 4),
        ("100000 0", 4, 4),
    ],
)
def test_cpu_max(text: str, affinity: int, cpus: int) -> None:
    assert cpus_from_cpu_max(text, affinity) == cpus


def test_budget_is_at_least_one() -> None:
    assert cpu_budget() >= 1


@pytest.mark.parametrize(
    ("asked", "budget", "threads"),
    [
        (1, 4, 1),  # one by default, whatever the pod has
        (2, 2, 2),  # the pod's CPUs when asked for
        (8, 2, 2),  # never past the pod's limit
    ],
)
def test_onnx_threads_never_pass_the_cpu_budget(asked: int, budget: int, threads: int) -> None:
    assert threads_for(asked, budget) == threads
