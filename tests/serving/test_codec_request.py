"""What both protocols share: the JSON body parsed, NaN and Infinity included."""

from __future__ import annotations

import pytest

from modelfactory_serving.codec.request import parse_json
from modelfactory_serving.errors import BadRequest

pytestmark = pytest.mark.unit


def test_parse_json() -> None:
    assert parse_json(b'{"a": NaN}')["a"] != parse_json(b'{"a": NaN}')["a"]
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_json(b'{"a": ')
