"""What the operator does at rest and when events pile up (pure logic, and the reconciler's
coalescing without any I/O)."""

import asyncio
import itertools
from typing import Any

import pytest

from modelfactory_operator.handlers.reconciler import Reconciler
from modelfactory_operator.logic import resync
from modelfactory_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_resync_spreads_resources_evenly_over_the_period() -> None:
    keys = [("msvc", "ns", f"m{i}") for i in range(600)]
    plan = resync.spread(reversed(keys), 600.0)
    assert [k for _, k in plan] == sorted(keys)  # a stable order, whatever the input order
    offsets = [o for o, _ in plan]
    assert offsets[0] == 0.0 and offsets[-1] < 600.0
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(offsets)}
    assert gaps == {1.0}  # one a second: no storm


def test_resync_of_nothing_and_of_duplicates() -> None:
    assert resync.spread([], 60.0) == []
    assert resync.spread(["a", "a", "b"], 60.0) == [(0.0, "a"), (30.0, "b")]


def test_only_events_that_nothing_retries_are_dropped_and_only_behind_a_waiter() -> None:
    assert resync.should_drop(coalesce=True, waiting=1)
    assert not resync.should_drop(coalesce=True, waiting=0)
    assert not resync.should_drop(coalesce=False, waiting=3)


def test_a_burst_of_events_for_one_resource_costs_at_most_two_reconciles() -> None:
    reconciler = Reconciler(OperatorSettings(), launcher=Any)  # type: ignore[arg-type]
    key = ("modelservices", "ns", "m")
    ran: list[int] = []

    async def one(i: int, coalesce: bool) -> None:
        async with reconciler.turns.turn(key, coalesce) as go:
            if go:
                ran.append(i)
                await asyncio.sleep(0.01)  # reading and writing the resource

    async def burst() -> None:
        # The first runs, the second waits, the next eight come while one waits: dropped. A
        # create/update/resume (coalesce=False) is never dropped.
        await asyncio.gather(*(one(i, True) for i in range(10)), one(10, False))
        assert not reconciler.turns.waiting
        await one(11, True)  # nothing waits any more: it runs

    asyncio.run(burst())
    assert ran == [0, 1, 10, 11]


def test_a_childs_initial_listing_waits_for_its_parents_first_reconcile() -> None:
    # At start-up the parent's resume reads its children: their listing adds nothing.
    assert not resync.child_event_matters(None, parent_known=False)
    # A watch that lists again later (its history expired) may hide a change: it counts.
    assert resync.child_event_matters(None, parent_known=True)
    for kind in ("ADDED", "MODIFIED", "DELETED"):
        assert resync.child_event_matters(kind, parent_known=False)
