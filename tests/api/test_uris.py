import re

import pytest
from pydantic import ValidationError

from modelfactory_api.modelservice import ModelSource
from modelfactory_api.trainingjob import DatasetSpec, OutputSpec
from modelfactory_api.uris import DOT_DOT, check_uri, dot_dot_rule, has_dot_dot

pytestmark = pytest.mark.unit

STEPS_OUT = [
    "pvc://c/../../etc",
    "pvc://c/a/..",
    "/data/../x",
    "..",
    "s3://b/%2e%2e/k",
    "gs://b/.%2E/k",
    "file:///m/%2E./1",
]
STAYS = ["pvc://c/a..b", "pvc://c/..a/b..", "s3://b/v1.../k", "/data/x.csv", "pvc://c/./a"]


@pytest.mark.parametrize("uri", STEPS_OUT)
def test_dot_dot_segments_are_found(uri: str) -> None:
    assert has_dot_dot(uri)
    message = "spec.model.uri must not contain '..' path segments"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_uri(uri, "spec.model.uri")


@pytest.mark.parametrize("uri", STAYS)
def test_dots_in_names_are_not_segments(uri: str) -> None:
    assert not has_dot_dot(uri)
    assert check_uri(uri, "f") == uri


def test_every_uri_field_refuses_them() -> None:
    digest = "sha256:" + "a" * 64
    for build, field in [
        (lambda u: DatasetSpec(uri=u, target="y"), "uri"),
        (lambda u: OutputSpec(storageUri=u), "storageUri"),
        (lambda u: ModelSource(uri=u, digest=digest), "uri"),
    ]:
        with pytest.raises(ValidationError) as err:
            build("pvc://c/../../etc")
        assert err.value.errors()[0]["loc"] == (field,)


def test_the_cel_rule_is_the_python_check() -> None:
    rule = dot_dot_rule("spec.x")["x-kubernetes-validations"][0]  # type: ignore[index]
    assert rule["rule"] == f"!self.matches('{DOT_DOT}')"
    assert rule["message"] == "spec.x must not contain '..' path segments"
    # RE2 (the API server's) and Python agree on this expression: no look-around, no backrefs.
    assert "\\" not in DOT_DOT and not re.search(r"\(\?[=!<]", DOT_DOT)
