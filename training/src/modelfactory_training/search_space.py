"""Mapping the spec's search space onto Ray Tune's: pure, no cluster needed.

Lists of values are searched by index, so any JSON value (lists, null, nested objects) reaches
the estimator unchanged instead of being interpreted by Tune.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from modelfactory_api.trainingjob import SearchDimension, TuningSpec
from modelfactory_training.errors import SpecError


@dataclass(frozen=True)
class SearchPlan:
    param_space: dict[str, Any]
    num_samples: int
    total_trials: int
    choices: dict[str, list[Any]] = field(default_factory=dict)

    def decode(self, config: dict[str, Any]) -> dict[str, Any]:
        """Estimator parameters of one trial's Tune config."""
        return decode_config(self.choices, config)


def decode_config(choices: dict[str, list[Any]], config: dict[str, Any]) -> dict[str, Any]:
    return {
        name: choices[name][int(value)] if name in choices else to_python(value)
        for name, value in config.items()
    }


def to_python(value: Any) -> Any:
    """numpy scalars (what Tune samples) as plain Python numbers."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _int_bound(name: str, value: float) -> int:
    if not float(value).is_integer():
        raise SpecError(
            "InvalidSearchSpace",
            f"tuning.searchSpace.{name}: an int range needs whole-number bounds, got {value}",
        )
    return int(value)


def _range_domain(name: str, dim: SearchDimension) -> Any:
    assert dim.low is not None and dim.high is not None
    if dim.type == "int":
        low, high = _int_bound(name, dim.low), _int_bound(name, dim.high)
        # Tune's integer upper bounds are exclusive; the spec's are inclusive.
        return tune.lograndint(low, high + 1) if dim.log else tune.randint(low, high + 1)
    if dim.low == dim.high:
        return tune.choice([dim.low])
    return tune.loguniform(dim.low, dim.high) if dim.log else tune.uniform(dim.low, dim.high)


def range_edges(dim: SearchDimension) -> list[Any]:
    """The ends of a numeric range, as the values the estimator will see, for validation."""
    assert dim.low is not None and dim.high is not None
    if dim.type == "int":
        return [int(dim.low), int(dim.high)]
    return [float(dim.low), float(dim.high)]


def candidates(tuning: TuningSpec) -> dict[str, list[Any]]:
    """Per searched parameter: its listed values or the ends of its range."""
    return {
        name: list(dim.values) if dim.values is not None else range_edges(dim)
        for name, dim in tuning.searchSpace.items()
    }


def build_plan(tuning: TuningSpec) -> SearchPlan:
    space = tuning.searchSpace
    if not space:
        return SearchPlan(param_space={}, num_samples=1, total_trials=1)
    choices = {n: list(d.values) for n, d in space.items() if d.values is not None}
    if tuning.algorithm == "grid":
        ranged = sorted(n for n, d in space.items() if d.values is None)
        if ranged:
            raise SpecError(
                "InvalidSearchSpace",
                f"tuning.searchSpace: grid search needs a list of values for "
                f"{', '.join(ranged)} (low/high ranges are for random search)",
            )
        param_space = {n: tune.grid_search(list(range(len(v)))) for n, v in choices.items()}
        total = math.prod(len(v) for v in choices.values())
        return SearchPlan(param_space, num_samples=1, total_trials=total, choices=choices)
    param_space = {}
    for name, dim in space.items():
        if dim.values is not None:
            param_space[name] = tune.choice(list(range(len(dim.values))))
        else:
            param_space[name] = _range_domain(name, dim)
    return SearchPlan(
        param_space, num_samples=tuning.trials, total_trials=tuning.trials, choices=choices
    )
