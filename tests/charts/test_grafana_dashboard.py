"""The operator chart's Grafana dashboards: an opt-in ConfigMap for Grafana's dashboard sidecar
that carries the files of dashboards/ byte for byte, and dashboards that stay portable (a
datasource variable, no fixed datasource uid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chart_helpers import CHARTS, Helm, by_kind, one

pytestmark = pytest.mark.unit

DASHBOARDS = CHARTS / "modelfactory" / "dashboards"
ENABLED = {"grafana.dashboards.enabled": "true"}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("values", [False, True], ids=["defaults", "example-values"])
def test_no_configmap_unless_enabled(helm: Helm, values: bool) -> None:
    assert not by_kind(helm.template("modelfactory", values=values), "ConfigMap")


def test_configmap_carries_the_files_with_the_sidecar_label(helm: Helm) -> None:
    docs = helm.template("modelfactory", release="mf", namespace="mf-system", sets=ENABLED)
    cm = one(docs, "ConfigMap")
    meta = cm["metadata"]
    assert meta["name"] == "mf-modelfactory-dashboards"
    assert meta["namespace"] == "mf-system"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "modelfactory"
    assert "annotations" not in meta
    assert dashboard_files()
    assert cm["data"] == {p.name: p.read_text() for p in dashboard_files()}


def test_label_namespace_and_annotations_are_configurable(helm: Helm) -> None:
    docs = helm.template(
        "modelfactory",
        sets={
            **ENABLED,
            "grafana.dashboards.label": "dashboards.example.com/grafana",
            "grafana.dashboards.labelValue": "serving",
            "grafana.dashboards.namespace": "monitoring",
        },
        extra=("--set-string", "grafana.dashboards.annotations.grafana_folder=Model Factory"),
    )
    meta = one(docs, "ConfigMap")["metadata"]
    assert meta["labels"]["dashboards.example.com/grafana"] == "serving"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["namespace"] == "monitoring"
    assert meta["annotations"] == {"grafana_folder": "Model Factory"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"grafana.dashboards.labelValue": "not a label"}, "labelValue"),
        ({"grafana.dashboards.namespace": "Bad_NS"}, "namespace"),
        ({"grafana.dashboards.folder": "x"}, "folder"),
    ],
)
def test_schema_rejects(helm: Helm, sets: dict[str, str], message: str) -> None:
    assert message in helm.template_fails("modelfactory", sets={**ENABLED, **sets})


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_portable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    for name, variable in variables.items():
        if name != "datasource":
            assert variable["datasource"] == datasource, name
    assert targets(dashboard)
    for title, target in targets(dashboard):
        assert target["datasource"] == datasource, title
        assert target["expr"].strip(), title
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == datasource, panel["title"]
