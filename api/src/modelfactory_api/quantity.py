"""Kubernetes resource quantities, as the API's CPU and memory patterns accept them, as numbers."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def parse(quantity: str) -> Decimal:
    """The value of a quantity such as 500m, 1.5, 512Mi or 2G."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"not a quantity: {quantity!r}")
    number, suffix = match.groups()
    return Decimal(number) * _SUFFIXES[suffix or ""]


def whole_cpus(quantity: str) -> int:
    """CPU cores rounded up, at least one: what a process may count on when it sizes itself."""
    return max(1, math.ceil(parse(quantity)))


def memory_bytes(quantity: str) -> int:
    return math.ceil(parse(quantity))
