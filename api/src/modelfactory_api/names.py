"""Rules on the names of Model Factory's resources, enforced by the API server (CEL rules at the
root of each CRD).

A resource's name is the `app.kubernetes.io/instance` label of all its children, and label
values hold at most 63 characters; every other derived name (release, Job, Service) is cut to
its limit with a stable hash suffix.
"""

from __future__ import annotations

LABEL_VALUE_MAX = 63

Rule = tuple[str, str]

RESOURCE_NAME: list[Rule] = [
    (
        f"size(self.metadata.name) <= {LABEL_VALUE_MAX}",
        f"metadata.name must be at most {LABEL_VALUE_MAX} characters: it labels every object "
        "made for the resource (app.kubernetes.io/instance)",
    ),
]

# A ModelService's name is also its Service's, and Service names are RFC 1035 labels.
SERVICE_NAME: list[Rule] = [
    *RESOURCE_NAME,
    (
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must start with a letter and hold only lower-case letters, digits and "
        "'-' (RFC 1035): it names the ModelService's Service",
    ),
]
