"""How a Ray started by the run is sized: no Ray needed for these."""

import pytest

from modelfactory_api.runtime import RaySizing
from modelfactory_training.cluster import local_ray_args

pytestmark = pytest.mark.unit


def test_a_sized_ray_takes_the_pods_share_only() -> None:
    sizing = RaySizing(numCpus=2, memoryBytes=4 * 2**30, objectStoreBytes=2**30)
    args = local_ray_args(sizing)
    assert args["num_cpus"] == 2
    assert args["object_store_memory"] == 2**30
    assert args["_memory"] == 3 * 2**30
    assert args["include_dashboard"] is False
    assert args["_system_config"] == {"worker_niceness": 0}


def test_an_unsized_ray_is_left_to_guess() -> None:
    args = local_ray_args(None)
    assert not {"num_cpus", "object_store_memory", "_memory"} & set(args)
