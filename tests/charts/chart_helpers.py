"""Helpers of the chart tests: find and run helm, render charts, inspect what they render."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
CHART_NAMES = ("training-job", "model-service", "modelfactory")


def example_values(chart: str) -> Path:
    return CHARTS / chart / "ci" / "example-values.yaml"


def cache_dir() -> Path:
    """Where hack/cluster.py keeps what it builds, resolved as hack/hostprocs.py cache_dir does."""
    base = os.environ.get("MF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelfactory"
    )
    return Path(base)


def find_helm() -> str | None:
    """The helm that hack/cluster.py builds (newest version first), else the one on PATH."""
    built = sorted((cache_dir() / "bin").glob("helm-*/helm"), reverse=True)
    for candidate in built:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("helm")


@dataclass
class Helm:
    """The helm binary, with helpers that render charts and parse what they render."""

    path: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([self.path, *args], capture_output=True, text=True, env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}"
            )
        return res

    def template_args(
        self,
        chart: str,
        *,
        values: bool = True,
        namespace: str = "ml",
        release: str = "test",
        sets: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> list[str]:
        args = ["template", release, str(CHARTS / chart), "--namespace", namespace]
        if values:
            args += ["-f", str(example_values(chart))]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        return [*args, *extra]

    def template_text(self, chart: str, **kwargs: Any) -> str:
        return self.run(*self.template_args(chart, **kwargs)).stdout

    def template(self, chart: str, **kwargs: Any) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.template_text(chart, **kwargs)) if d]

    def template_fails(self, chart: str, **kwargs: Any) -> str:
        res = self.run(*self.template_args(chart, **kwargs), check=False)
        assert res.returncode != 0, f"helm template unexpectedly succeeded:\n{res.stdout}"
        return res.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template in an object, as (where, template)."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in ("Job", "Deployment"):
        return [(kind, spec["template"])]
    if kind == "RayJob":
        cluster = spec["rayClusterSpec"]
        found = [("RayJob head", cluster["headGroupSpec"]["template"])]
        found += [
            (f"RayJob worker group {g['groupName']}", g["template"])
            for g in cluster.get("workerGroupSpecs", [])
        ]
        if "submitterPodTemplate" in spec:
            found.append(("RayJob submitter", spec["submitterPodTemplate"]))
        return found
    return []


def assert_restricted(where: str, template: dict[str, Any]) -> None:
    """Pod Security "restricted", plus the project's own rules (user 1000, read-only root,
    writable /tmp)."""
    spec = template["spec"]
    pod_sc = spec.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True, where
    assert pod_sc.get("runAsUser") == 1000, where
    assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        name = f"{where} container {c['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, name
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
        assert not sc.get("capabilities", {}).get("add"), name
        assert sc.get("readOnlyRootFilesystem") is True, name
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser") == 1000, name
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert not sc.get("privileged"), name
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: no writable /tmp"
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is not an emptyDir"
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for v in spec.get("volumes", []):
        assert "hostPath" not in v, where
