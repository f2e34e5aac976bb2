#!/usr/bin/env python3
"""Generate crds/*.yaml from the pydantic models in modelfactory_api (the one source of truth).

python hack/gen_crds.py           # write crds/
python hack/gen_crds.py --check   # exit 1 when crds/ differs from what the models say
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "api" / "src"))

from modelfactory_api import names  # noqa: E402
from modelfactory_api.batchprediction import (  # noqa: E402
    BATCHPREDICTION_KIND,
    BATCHPREDICTION_PLURAL,
    BatchPredictionSpec,
    BatchPredictionStatus,
)
from modelfactory_api.modelservice import (  # noqa: E402
    MODELSERVICE_KIND,
    MODELSERVICE_PLURAL,
    ModelServiceSpec,
    ModelServiceStatus,
)
from modelfactory_api.trainingjob import (  # noqa: E402
    GROUP,
    TRAININGJOB_KIND,
    TRAININGJOB_PLURAL,
    VERSION,
    TrainingJobSpec,
    TrainingJobStatus,
)

CATEGORY = "modelfactory"


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn one pydantic JSON-schema node into a Kubernetes structural schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            node = structural({**options[0], **rest}, defs)
            if rest.get("default", "absent") is None:
                node.pop("default", None)
            return node
        raise ValueError(f"unsupported union: {schema}")
    out: dict[str, Any] = {}
    if "description" in schema:
        out["description"] = " ".join(schema["description"].split())
    kind = schema.get("type")
    if "const" in schema:
        out["type"] = "string"
        out["enum"] = [schema["const"]]
    elif "enum" in schema:
        out["type"] = "string"
        out["enum"] = schema["enum"]
    elif kind == "object":
        out["type"] = "object"
        if "properties" in schema:
            out["properties"] = {
                name: structural(sub, defs) for name, sub in schema["properties"].items()
            }
            if schema.get("required"):
                out["required"] = list(schema["required"])
        elif (
            isinstance(schema.get("additionalProperties"), dict) and schema["additionalProperties"]
        ):
            out["additionalProperties"] = structural(schema["additionalProperties"], defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["type"] = "array"
        items = schema.get("items") or {}
        out["items"] = (
            structural(items, defs) if items else {"x-kubernetes-preserve-unknown-fields": True}
        )
    elif kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
    elif kind is None:
        out["x-kubernetes-preserve-unknown-fields"] = True
    for key, k8s_key in (
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("exclusiveMinimum", "exclusiveMinimum"),
        ("exclusiveMaximum", "exclusiveMaximum"),
        ("minLength", "minLength"),
        ("maxLength", "maxLength"),
        ("pattern", "pattern"),
        ("minItems", "minItems"),
        ("maxItems", "maxItems"),
    ):
        if key in schema:
            value = schema[key]
            if key.startswith("exclusive"):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[k8s_key] = True
            else:
                out[k8s_key] = value
    if "default" in schema and schema["default"] is not None and schema["default"] != {}:
        out["default"] = schema["default"]
    if "x-kubernetes-validations" in schema:
        out["x-kubernetes-validations"] = schema["x-kubernetes-validations"]
    return out


def model_schema(model: Any) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd(
    kind: str,
    plural: str,
    short: str,
    spec_model: Any,
    status_model: Any,
    columns: list[dict[str, str]],
    description: str,
    name_rules: list[tuple[str, str]],
) -> dict[str, Any]:
    spec = model_schema(spec_model)
    # The status declares every field the operator and the workloads write: the API server
    # prunes anything else (the operator's framework keeps its bookkeeping in annotations).
    status = model_schema(status_model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelfactory"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {"rule": rule, "message": message} for rule, message in name_rules
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> dict[str, str]:
    tj = crd(
        TRAININGJOB_KIND,
        TRAININGJOB_PLURAL,
        "tj",
        TrainingJobSpec,
        TrainingJobStatus,
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Metric", "type": "string", "jsonPath": ".status.metric"},
            {"name": "Score", "type": "number", "jsonPath": ".status.score"},
            {"name": "Promoted", "type": "integer", "jsonPath": ".status.promotedVersion"},
            {"name": "Latest", "type": "integer", "jsonPath": ".status.latestVersion"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "A TrainingJob trains a scikit-learn model with a Ray Tune hyper-parameter search and "
        "writes a versioned, verifiable model artifact.",
        names.RESOURCE_NAME,
    )
    ms = crd(
        MODELSERVICE_KIND,
        MODELSERVICE_PLURAL,
        "msvc",
        ModelServiceSpec,
        ModelServiceStatus,
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
            {"name": "Model", "type": "integer", "jsonPath": ".status.modelVersion"},
            {"name": "URL", "type": "string", "jsonPath": ".status.url"},
            {
                "name": "Canary",
                "type": "integer",
                "jsonPath": ".status.rollout.weight",
                "description": "Percent of requests the new version answers during a rollout.",
            },
            {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.phase"},
            {
                "name": "Drift",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="DataDrift")].reason',
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "A ModelService serves a model version over Open Inference Protocol v2 and KServe v1 "
        "with an autoscaled model server.",
        names.SERVICE_NAME,
    )
    bp = crd(
        BATCHPREDICTION_KIND,
        BATCHPREDICTION_PLURAL,
        "bp",
        BatchPredictionSpec,
        BatchPredictionStatus,
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Model", "type": "integer", "jsonPath": ".status.model.version"},
            {
                "name": "Rows",
                "type": "integer",
                "jsonPath": ".status.progress.rowsWritten",
                "description": "Output rows written.",
            },
            {"name": "Percent", "type": "number", "jsonPath": ".status.progress.percent"},
            {"name": "Drifted", "type": "boolean", "jsonPath": ".status.drifted"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "A BatchPrediction scores a dataset with a model version on Ray Data and commits the "
        "output with a manifest of its lineage.",
        names.RESOURCE_NAME,
    )
    header = "# Generated by hack/gen_crds.py from api/src/modelfactory_api; do not edit.\n"
    return {
        f"{GROUP}_{BATCHPREDICTION_PLURAL}.yaml": header + yaml.safe_dump(bp, sort_keys=False),
        f"{GROUP}_{TRAININGJOB_PLURAL}.yaml": header + yaml.safe_dump(tj, sort_keys=False),
        f"{GROUP}_{MODELSERVICE_PLURAL}.yaml": header + yaml.safe_dump(ms, sort_keys=False),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    out_dir = ROOT / "crds"
    stale = []
    for name, text in render().items():
        path = out_dir / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            out_dir.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"crds/ is stale ({', '.join(stale)}): run python hack/gen_crds.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
