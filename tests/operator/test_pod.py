import pytest

from modelfactory_api.pod import PodSettings
from modelfactory_operator.logic import pod

pytestmark = pytest.mark.unit


def test_only_literal_env_reaches_a_local_process() -> None:
    settings = PodSettings.model_validate(
        {
            "env": [
                {"name": "A", "value": "1"},
                {"name": "EMPTY", "value": ""},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}}],
        }
    )
    assert pod.literal_env(pod.values(settings)) == {"A": "1", "EMPTY": ""}
    assert pod.literal_env({}) == {}


def test_values_leave_unset_fields_out_of_kubernetes_objects() -> None:
    settings = PodSettings.model_validate(
        {
            "tolerations": [{"operator": "Exists"}],
            "envFrom": [{"secretRef": {"name": "s"}}],
        }
    )
    values = pod.values(settings)
    assert values["tolerations"] == [{"operator": "Exists"}]
    assert values["envFrom"] == [{"secretRef": {"name": "s"}}]
