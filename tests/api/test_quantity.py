import pytest

from modelfactory_api import quantity

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("1", 1), ("500m", 1), ("1500m", 2), ("2", 2), ("2.5", 3), ("0.1", 1), ("16", 16)],
)
def test_whole_cpus_round_up_to_at_least_one(text: str, cpus: int) -> None:
    assert quantity.whole_cpus(text) == cpus


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        ("1.5Gi", 3 * 2**29),
        ("100k", 100_000),
        ("1024", 1024),
        ("1Ti", 2**40),
    ],
)
def test_memory_bytes(text: str, size: int) -> None:
    assert quantity.memory_bytes(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1Gb", "-1", "1e3"])
def test_what_is_not_a_quantity_says_so(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        quantity.parse(text)
