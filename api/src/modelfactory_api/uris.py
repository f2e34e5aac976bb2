"""Storage URIs: what every component accepts as a dataset, model store or model version location.

A URI may not step out of the place it names: `pvc://claim/../../etc` would reach outside the
claim's mount, `s3://bucket/models/../other` outside the prefix a user was given. `..` segments
(also percent-encoded) are refused by the CRD schema (`dot_dot_rule`), the pydantic models
(`no_dot_dot`) and the runtimes (`check_uri`), each naming the field.
"""

from __future__ import annotations

import re

from pydantic.config import JsonDict

# A path segment that is `..`, spelled plainly or percent-encoded (%2e, either case). No
# backslashes: the expression goes verbatim into a CEL string literal.
DOT_DOT = r"(^|/)([.]|%2[eE]){2}(/|$)"
DOT_DOT_MESSAGE = "must not contain '..' path segments"
_DOT_DOT = re.compile(DOT_DOT)


def has_dot_dot(uri: str) -> bool:
    return _DOT_DOT.search(uri) is not None


def dot_dot_rule(field: str) -> JsonDict:
    """The CEL rule for a string field (the API server's regular expressions are RE2)."""
    rule: JsonDict = {
        "rule": f"!self.matches('{DOT_DOT}')",
        "message": f"{field} {DOT_DOT_MESSAGE}",
    }
    return {"x-kubernetes-validations": [rule]}


def no_dot_dot(uri: str | None) -> str | None:
    """A pydantic field validator: the error's location names the field."""
    if uri is not None and has_dot_dot(uri):
        raise ValueError(DOT_DOT_MESSAGE)
    return uri


def check_uri(uri: str, field: str) -> str:
    """The URI unchanged, or ValueError naming `field` when it has a `..` segment."""
    if has_dot_dot(uri):
        raise ValueError(f"{field} {DOT_DOT_MESSAGE}: {uri!r}")
    return uri
