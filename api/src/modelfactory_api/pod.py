"""spec.pod: what a cluster may need of a workload's pods (shared by TrainingJob and ModelService).

Image pull secrets, where the pods may run, the ServiceAccount they run as and extra environment.
The operator renders these into the workload charts; the local launcher only uses literal env.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from modelfactory_api.base import ApiModel, cel

# The runtime's own configuration variables; users may not set or shadow them.
RESERVED_ENV_PREFIX = "MF_"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"

MAX_PULL_SECRETS = 16
MAX_NODE_SELECTOR = 32
MAX_TOLERATIONS = 32
MAX_ENV = 64
MAX_ENV_FROM = 16

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]


class KeySelector(ApiModel):
    """One key of a Secret or ConfigMap in the resource's namespace."""

    name: ObjectName = Field(description="Name of the Secret or ConfigMap.")
    key: str = Field(
        description="The key to read.", min_length=1, max_length=253, pattern=CONFIG_KEY
    )
    optional: bool | None = Field(None, description="Start even when it does not exist.")


class FieldSelector(ApiModel):
    """A field of the pod (Kubernetes downward API)."""

    fieldPath: str = Field(
        description="Path of the field, e.g. metadata.name or status.podIP.",
        min_length=1,
        max_length=256,
    )
    apiVersion: str | None = Field(None, description="Schema version of fieldPath.", max_length=64)


class EnvVarSource(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef)]"
                ".filter(x, x).size() == 1",
                "valueFrom: set exactly one of secretKeyRef, configMapKeyRef and fieldRef",
            ),
        )
    )

    secretKeyRef: KeySelector | None = Field(None, description="A key of a Secret.")
    configMapKeyRef: KeySelector | None = Field(None, description="A key of a ConfigMap.")
    fieldRef: FieldSelector | None = Field(None, description="A field of the pod.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        chosen = [self.secretKeyRef, self.configMapKeyRef, self.fieldRef]
        if sum(x is not None for x in chosen) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef and fieldRef")
        return self


class EnvVar(ApiModel):
    """An environment variable of the workload's container: a value or where to read it."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!self.name.startsWith('MF_')",
                "env names starting with MF_ are reserved for Model Factory's own configuration",
            ),
            ("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both"),
        )
    )

    name: str = Field(description="Variable name.", min_length=1, max_length=128, pattern=ENV_NAME)
    value: str | None = Field(None, description="Literal value.", max_length=32768)
    valueFrom: EnvVarSource | None = Field(
        None, description="Read the value from a Secret, a ConfigMap or the pod."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(
                f"{name}: names starting with {RESERVED_ENV_PREFIX} are reserved for Model "
                "Factory's own configuration"
            )
        return name

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.valueFrom is not None:
            raise ValueError(f"{self.name}: set value or valueFrom, not both")
        return self


class ObjectReference(ApiModel):
    name: ObjectName = Field(description="Name of the object in the resource's namespace.")
    optional: bool | None = Field(None, description="Start even when it does not exist.")


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or Secret as environment variables."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("has(self.configMapRef) != has(self.secretRef)", "set one of configMapRef, secretRef"),
            (
                "!has(self.prefix) || !self.prefix.startsWith('MF_')",
                "prefixes starting with MF_ are reserved for Model Factory's own configuration",
            ),
        )
    )

    configMapRef: ObjectReference | None = Field(None, description="A ConfigMap.")
    secretRef: ObjectReference | None = Field(None, description="A Secret.")
    prefix: str | None = Field(
        None, description="Put before every key's name.", max_length=128, pattern=ENV_NAME
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.configMapRef is None) == (self.secretRef is None):
            raise ValueError("set one of configMapRef and secretRef")
        if self.prefix is not None and self.prefix.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(
                f"prefix {self.prefix}: prefixes starting with {RESERVED_ENV_PREFIX} are reserved "
                "for Model Factory's own configuration"
            )
        return self


class Toleration(ApiModel):
    """Lets the pods run on nodes with a matching taint."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("has(self.key) || self.operator == 'Exists'", "a toleration without key needs Exists"),
            (
                "self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "a toleration with operator Exists takes no value",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds needs effect NoExecute",
            ),
        )
    )

    key: str | None = Field(None, description="Taint key.", max_length=317, pattern=LABEL_KEY)
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: LabelValue | None = Field(None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; every effect when unset."
    )
    tolerationSeconds: int | None = Field(
        None, description="With NoExecute: how long the pod stays after the taint appears."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without key needs operator Exists")
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.tolerationSeconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


class PodSettings(ApiModel):
    """Pod settings a cluster may need. Applied to every pod of the workload."""

    serviceAccountName: ObjectName | None = Field(
        None,
        description=(
            "ServiceAccount the pods run as, e.g. one bound to a cloud identity for s3:// or "
            "gs:// storage. Unset: training pods get one of their own, servers the namespace's "
            "default. A training run's ServiceAccount is also granted get and patch on its "
            "TrainingJob's status, to report the result."
        ),
    )
    imagePullSecrets: list[ObjectName] = Field(
        default_factory=list,
        description="Secrets (kubernetes.io/dockerconfigjson) to pull the image with.",
        max_length=MAX_PULL_SECRETS,
    )
    nodeSelector: dict[str, LabelValue] = Field(
        default_factory=dict,
        description="Node labels the pods' nodes must have.",
        json_schema_extra=cel(
            (f"self.size() <= {MAX_NODE_SELECTOR}", f"at most {MAX_NODE_SELECTOR} labels")
        ),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Taints the pods tolerate.",
        max_length=MAX_TOLERATIONS,
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment variables (names may not start with MF_).",
        max_length=MAX_ENV,
        json_schema_extra=cel(
            (
                "self.all(e, self.exists_one(f, f.name == e.name))",
                "env names must be unique",
            )
        ),
    )
    envFrom: list[EnvFromSource] = Field(
        default_factory=list,
        description="ConfigMaps and Secrets whose keys become environment variables.",
        max_length=MAX_ENV_FROM,
    )

    @field_validator("nodeSelector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        if len(selector) > MAX_NODE_SELECTOR:
            raise ValueError(f"at most {MAX_NODE_SELECTOR} labels")
        bad = sorted(k for k in selector if len(k) > 317 or not re.match(LABEL_KEY, k))
        if bad:
            raise ValueError(f"not label keys: {', '.join(bad)}")
        return selector

    @field_validator("env")
    @classmethod
    def _unique_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        names = [e.name for e in env]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"env names must be unique ({', '.join(twice)} repeated)")
        return env
