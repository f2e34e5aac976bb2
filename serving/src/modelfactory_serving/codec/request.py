"""What decoding a request of either protocol leads to, and what both protocols check alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from modelfactory_serving.errors import BadRequest, PayloadTooLarge
from modelfactory_serving.model import PREDICT, PREDICT_PROBA, Batch


def parse_json(body: bytes | memoryview) -> Any:
    """orjson first; the stdlib only for what orjson refuses but JSON clients send (NaN, Infinity),
    so such values reach validation and get a precise message."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        import json

        try:
            text = bytes(body).decode("utf-8")
            return json.loads(text)
        except (ValueError, RecursionError):
            raise BadRequest(f"malformed JSON: {e}") from None


@dataclass
class Decoded:
    """One request, checked and ready for the batcher."""

    batch: Batch
    rows: int
    outputs: tuple[str, ...] = (PREDICT,)
    binary_outputs: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None

    @property
    def want_proba(self) -> bool:
        return PREDICT_PROBA in self.outputs


def check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise BadRequest("the request has no rows")
    if rows > max_rows:
        raise PayloadTooLarge(f"too many rows: {rows} (this server takes at most {max_rows})")
