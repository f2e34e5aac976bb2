from __future__ import annotations

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from modelfactory_api.trainingjob import TuningSpec
from modelfactory_training.errors import SpecError
from modelfactory_training.search_space import build_plan, candidates, decode_config

pytestmark = pytest.mark.unit


def tuning(**kwargs: object) -> TuningSpec:
    return TuningSpec.model_validate(kwargs)


def test_grid_enumerates_every_combination_by_index() -> None:
    plan = build_plan(
        tuning(
            algorithm="grid",
            searchSpace={
                "max_depth": {"values": [2, None, 8]},
                "hidden": {"values": [[10], [10, 5]]},
            },
        )
    )
    assert plan.total_trials == 6
    assert plan.num_samples == 1
    assert plan.param_space["max_depth"] == {"grid_search": [0, 1, 2]}
    assert plan.decode({"max_depth": 1, "hidden": 1}) == {"max_depth": None, "hidden": [10, 5]}


def test_grid_rejects_ranges_naming_the_parameter() -> None:
    with pytest.raises(SpecError, match="list of values for alpha") as err:
        build_plan(tuning(algorithm="grid", searchSpace={"alpha": {"low": 0.1, "high": 1.0}}))
    assert err.value.reason == "InvalidSearchSpace"


def test_random_maps_each_dimension_to_a_tune_domain() -> None:
    plan = build_plan(
        tuning(
            algorithm="random",
            trials=7,
            searchSpace={
                "criterion": {"values": ["gini", "entropy"]},
                "alpha": {"low": 0.001, "high": 1.0, "log": True},
                "frac": {"low": 0.1, "high": 0.9},
                "depth": {"low": 2, "high": 10, "type": "int"},
                "leaves": {"low": 8, "high": 256, "type": "int", "log": True},
            },
        )
    )
    space = plan.param_space
    assert (plan.num_samples, plan.total_trials) == (7, 7)
    assert isinstance(space["criterion"], Categorical)
    assert space["criterion"].categories == [0, 1]
    assert isinstance(space["alpha"], Float) and space["alpha"].lower == 0.001
    assert type(space["alpha"].sampler).__name__.endswith("LogUniform")
    assert type(space["frac"].sampler).__name__.endswith("_Uniform")
    # The spec's int bounds are inclusive, Tune's upper bound is not.
    assert isinstance(space["depth"], Integer)
    assert (space["depth"].lower, space["depth"].upper) == (2, 11)
    assert type(space["leaves"].sampler).__name__.endswith("LogUniform")


def test_samples_stay_inside_inclusive_int_bounds() -> None:
    plan = build_plan(tuning(searchSpace={"depth": {"low": 2, "high": 3, "type": "int"}}, trials=5))
    seen = {plan.param_space["depth"].sample() for _ in range(200)}
    assert seen == {2, 3}


def test_int_range_needs_whole_bounds() -> None:
    with pytest.raises(SpecError, match=r"depth: an int range needs whole-number bounds"):
        build_plan(tuning(searchSpace={"depth": {"low": 1.5, "high": 3, "type": "int"}}))


def test_empty_space_is_one_trial() -> None:
    plan = build_plan(tuning(algorithm="random", trials=20))
    assert (plan.total_trials, plan.num_samples, plan.param_space) == (1, 1, {})


def test_candidates_are_values_or_range_ends() -> None:
    spec = tuning(
        searchSpace={
            "n": {"values": [1, 2]},
            "depth": {"low": 2, "high": 9, "type": "int"},
            "alpha": {"low": 0.5, "high": 2},
        }
    )
    assert candidates(spec) == {"n": [1, 2], "depth": [2, 9], "alpha": [0.5, 2.0]}


def test_decode_turns_numpy_scalars_into_python() -> None:
    import numpy as np

    decoded = decode_config({}, {"a": np.int64(3), "b": np.float64(0.5)})
    assert decoded == {"a": 3, "b": 0.5}
    assert type(decoded["a"]) is int and type(decoded["b"]) is float
