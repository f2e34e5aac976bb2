"""What the operator chart tells a user works as written: the examples its NOTES name exist and
pass the operator's own checks for a cluster, and the chart names every CRD it installs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHARTS, Helm

from modelfactory_operator.logic import validate

pytestmark = pytest.mark.unit
ROOT = CHARTS.parent
CHART = CHARTS / "modelfactory"
NOTES = CHART / "templates" / "NOTES.txt"
EXAMPLE = re.compile(r"\bexamples/[\w./-]+\.ya?ml\b")
CHECKS = {
    "TrainingJob": validate.trainingjob_spec,
    "ModelService": validate.modelservice_spec,
    "BatchPrediction": validate.batchprediction_spec,
}


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]


def notes_examples() -> list[str]:
    return sorted(set(EXAMPLE.findall(NOTES.read_text())))


def test_the_notes_name_examples_that_exist() -> None:
    named = notes_examples()
    assert named, "the NOTES name no example to apply"
    missing = [p for p in named if not (ROOT / p).is_file()]
    assert missing == [], missing


def test_the_notes_name_no_pod_local_model_store() -> None:
    # file:// is refused by the kubernetes launcher: a pod's own filesystem dies with the pod.
    assert "file://" not in NOTES.read_text()


@pytest.mark.parametrize("example", notes_examples())
def test_every_example_the_notes_apply_passes_the_operators_checks_for_a_cluster(
    example: str,
) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / example).read_text()) if d]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for doc in docs:
        check = CHECKS.get(doc["kind"])
        if check is not None:
            check(doc["spec"], "kubernetes")
        uri = ((doc.get("spec") or {}).get("output") or {}).get("storageUri", "")
        if uri.startswith("pvc://"):
            # The claim ships in the same file: applying it alone is enough.
            assert uri.removeprefix("pvc://").split("/", 1)[0] in claims, (example, uri)


def test_the_notes_name_every_crd() -> None:
    text = NOTES.read_text()
    for crd in crds():
        assert crd["metadata"]["name"] in text, crd["metadata"]["name"]
        for short in crd["spec"]["names"].get("shortNames") or []:
            assert f"({short})" in text or f"(short name {short})" in text, short


def test_the_chart_describes_every_crd_it_installs() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    said = " ".join([chart["description"], *map(str, (chart.get("annotations") or {}).values())])
    readme = (CHART / "README.md").read_text()
    kinds = [crd["spec"]["names"]["kind"] for crd in crds()]
    assert len(kinds) == len(list((ROOT / "crds").glob("*.yaml")))
    for kind in kinds:
        assert kind in said, kind
        assert f"`{kind}`" in readme.split("\n\n", 2)[1], kind


def rendered_notes(helm: Helm, tmp_path: Path, *sets: str) -> str:
    """The NOTES as `helm install` prints them: helm template leaves NOTES.txt out, so a copy of
    the chart renders the same text through a named template into a ConfigMap."""
    chart = tmp_path / "modelfactory"
    shutil.copytree(CHART, chart, symlinks=False)
    templates = chart / "templates"
    notes = (templates / "NOTES.txt").read_text()
    (templates / "_notes.tpl").write_text('{{- define "notes" -}}' + notes + "{{- end -}}")
    (templates / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "notes" . | quote }}\n'
    )
    args = ["template", "t", str(chart), "-n", "mf", "--show-only", "templates/notes.yaml"]
    for value in sets:
        args += ["--set", value]
    return str(yaml.safe_load(helm.run(*args).stdout)["data"]["notes"])


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",)])
def test_the_notes_render_with_a_namespace_to_apply_in(
    helm: Helm, tmp_path: Path, sets: tuple[str, ...]
) -> None:
    text = rendered_notes(helm, tmp_path, *sets)
    namespace = "team-a" if sets else "default"
    for example in notes_examples():
        if f"-f {example}" in NOTES.read_text():
            assert f"kubectl apply -n {namespace} -f {example}" in text, text
    assert "{{" not in text and "file://" not in text
