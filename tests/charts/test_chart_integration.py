"""The three charts against the real local control plane (hack/cluster.py): the API server
accepts what they render, Pod Security "restricted" admits their pods (including the ones
KubeRay builds from a RayJob), owner references garbage-collect, upgrades keep an autoscaled
Deployment's size, and the operator's RBAC allows its job and nothing more."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHARTS, Helm, example_values

pytestmark = pytest.mark.integration

KUBERAY_CRDS = Path("~/.cache/modelfactory/kuberay-crds/v1.5.1").expanduser()
NO_VOLUMES = ("--set-json", "volumes=[]", "--set-json", "volumeMounts=[]")


@pytest.fixture(scope="session")
def khelm(kube: Any, helm: Helm) -> Helm:
    """helm talking to the test cluster."""
    return Helm(helm.path, env=kube.env)


@pytest.fixture(scope="session")
def rayjob_crd(kube: Any) -> None:
    """KubeRay's RayJob CRD (hack/cluster.py up installs it; install it if someone did not)."""
    if kube.run("kubectl", "get", "crd", "rayjobs.ray.io", check=False).returncode == 0:
        return
    crd = KUBERAY_CRDS / "ray.io_rayjobs.yaml"
    if not crd.exists():
        pytest.fail(
            f"the RayJob CRD is not installed and {crd} is missing: "
            "run python3 hack/cluster.py build",
            pytrace=False,
        )
    for name in ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml"):
        kube.kubectl("apply", "--server-side", "-f", str(KUBERAY_CRDS / name))
    kube.wait_established("rayjobs.ray.io")


def restrict(kube: Any, namespace: str) -> None:
    kube.kubectl(
        "label",
        "namespace",
        namespace,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    )


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def pods(kube: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
    return kube.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]


def warning_events(kube: Any, namespace: str) -> list[str]:
    events = kube.kubectl_json("get", "events", "-n", namespace)["items"]
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['reason']}: "
        f"{e.get('message', '')}"
        for e in events
        if e.get("type") == "Warning" and e.get("reason", "").startswith("FailedCreate")
    ]


# ----------------------------------------------------------------------------- server dry run


@pytest.mark.parametrize(
    ("chart", "extra"),
    [
        ("training-job", ()),
        ("training-job", ("--set", "mode=rayjob", "--set", "workers=2")),
        ("model-service", ()),
        ("modelfactory", ("--set-json", "watchNamespaces=[]")),
        ("modelfactory", ("--set-json", 'watchNamespaces=["{namespace}"]')),
        ("modelfactory", ("--include-crds",)),
    ],
    ids=[
        "training-job",
        "training-job-rayjob",
        "model-service",
        "modelfactory-cluster-wide",
        "modelfactory-namespaced",
        "modelfactory-with-crds",
    ],
)
def test_server_dry_run(
    kube: Any, khelm: Helm, rayjob_crd: None, namespace: str, chart: str, extra: tuple[str, ...]
) -> None:
    restrict(kube, namespace)
    extra = tuple(a.replace("{namespace}", namespace) for a in extra)
    values = chart != "modelfactory"  # its example watches namespaces that do not exist here
    manifest = khelm.template_text(chart, namespace=namespace, values=values, extra=extra)
    res = kube.run(
        "kubectl", "apply", "--dry-run=server", "-f", "-", input_text=manifest, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "PodSecurity" not in res.stderr, res.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest) if d]
    assert res.stdout.count("(server dry run)") == len(kinds), res.stdout


# ----------------------------------------------------------------------------- real objects


def test_job_pod_admitted_as_restricted(kube: Any, khelm: Helm, namespace: str) -> None:
    restrict(kube, namespace)
    manifest = khelm.template_text(
        "training-job", namespace=namespace, sets={"owner": "null"}, extra=NO_VOLUMES
    )
    kube.kubectl("apply", "-f", "-", input_text=manifest)
    found = wait_for(
        "the training pod", lambda: pods(kube, namespace, "modelfactory.dev/run-id=1a2b3c4d")
    )
    assert found[0]["spec"]["serviceAccountName"] == "iris-trainer"
    assert not warning_events(kube, namespace)


def test_rayjob_pods_admitted_as_restricted(
    kube: Any, khelm: Helm, rayjob_crd: None, namespace: str
) -> None:
    """KubeRay adds containers, volumes and commands to the head, worker and submitter pods:
    all of them still pass Pod Security "restricted"."""
    restrict(kube, namespace)
    manifest = khelm.template_text(
        "training-job",
        namespace=namespace,
        extra=NO_VOLUMES,
        sets={"owner": "null", "mode": "rayjob", "workers": "2"},
    )
    kube.kubectl("apply", "-f", "-", input_text=manifest)

    def ray_pods() -> list[dict[str, Any]] | None:
        found = pods(kube, namespace, "modelfactory.dev/run-id=1a2b3c4d,ray.io/node-type")
        return found if len(found) >= 3 else None

    try:
        found = wait_for(
            "the Ray head and 2 workers (is KubeRay's ray-operator running?)", ray_pods, timeout=90
        )
    except AssertionError:
        raise AssertionError(f"{warning_events(kube, namespace)}") from None
    types = sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in found)
    assert types == ["head", "worker", "worker"]
    for pod in found:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "iris-trainer"
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
    assert not warning_events(kube, namespace)


def test_owner_references_garbage_collect(kube: Any, khelm: Helm, namespace: str) -> None:
    """Owner references as the charts write them let the garbage collector delete every object
    of a release when its owner goes (any owner kind works the same as a TrainingJob)."""
    kube.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = kube.kubectl_json("get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owner = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid})
    for chart in ("training-job", "model-service"):
        manifest = khelm.template_text(
            chart, namespace=namespace, extra=(*NO_VOLUMES, "--set-json", f"owner={owner}")
        )
        kube.kubectl("apply", "-f", "-", input_text=manifest)
    kinds = "serviceaccount,role,rolebinding,job,deployment,service,hpa,pdb"
    selector = "app.kubernetes.io/part-of=modelfactory"
    assert len(kube.kubectl_json("get", kinds, "-n", namespace, "-l", selector)["items"]) == 8
    kube.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        "garbage collection of the charts' objects",
        lambda: not kube.kubectl_json("get", kinds, "-n", namespace, "-l", selector)["items"],
    )


def test_model_service_rolls_and_keeps_autoscaled_replicas(
    kube: Any, khelm: Helm, namespace: str
) -> None:
    restrict(kube, namespace)
    base = [
        "upgrade",
        "--install",
        "svc",
        str(CHARTS / "model-service"),
        "-n",
        namespace,
        "-f",
        str(example_values("model-service")),
        "--set",
        "owner=null",
        *NO_VOLUMES,
    ]

    def deployment() -> dict[str, Any]:
        return kube.kubectl_json("get", "deployment", "iris-svc", "-n", namespace)

    khelm.run(*base)
    assert deployment()["spec"]["replicas"] == 1
    wait_for(
        "the first server pod", lambda: pods(kube, namespace, "app.kubernetes.io/instance=iris")
    )

    # the HPA (or anyone) scaled it up: a new model version rolls without scaling it down
    kube.kubectl("scale", "deployment", "iris-svc", "-n", namespace, "--replicas=3")
    khelm.run(*base, "--set", "modelVersion=2")
    deploy = deployment()
    assert deploy["spec"]["replicas"] == 3
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modelfactory.dev/model-version"] == "2"

    # the live count is kept within the new bounds
    khelm.run(*base, "--set", "modelVersion=2", "--set", "replicas.max=2")
    assert deployment()["spec"]["replicas"] == 2
    hpa = kube.kubectl_json("get", "hpa", "iris-svc", "-n", namespace)
    assert hpa["spec"]["maxReplicas"] == 2
    assert not warning_events(kube, namespace)


# ----------------------------------------------------------------------------- operator RBAC


@pytest.fixture
def extra_namespaces(kube: Any, namespace: str) -> Iterator[tuple[str, str]]:
    """Two more namespaces: one the operator watches, one it does not."""
    names = (f"{namespace[:50]}-w", f"{namespace[:50]}-u")
    for name in names:
        kube.kubectl("create", "namespace", name)
    yield names
    for name in names:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@contextlib.contextmanager
def install_operator(kube: Any, khelm: Helm, namespace: str, watch: list[str]) -> Iterator[str]:
    """Install the operator chart (CRDs left alone: they are cluster-wide and shared); yield
    the ServiceAccount's user name; uninstall (cluster-scoped RBAC included) afterwards."""
    release = f"mf-{uuid.uuid4().hex[:8]}"
    args = [
        "install",
        release,
        str(CHARTS / "modelfactory"),
        "-n",
        namespace,
        "--skip-crds",
        "--set",
        f"fullnameOverride={release}",
    ]
    for i, ns in enumerate(watch):
        args += ["--set", f"watchNamespaces[{i}]={ns}"]
    restrict(kube, namespace)
    out = khelm.run(*args).stdout
    assert "kubectl get modelfactory" in out, out
    try:
        wait_for(
            "the operator pod",
            lambda: pods(kube, namespace, f"app.kubernetes.io/instance={release}"),
        )
        yield f"system:serviceaccount:{namespace}:{release}"
    finally:
        khelm.run("uninstall", release, "-n", namespace, check=False)


def can_i(
    kube: Any,
    user: str,
    verb: str,
    resource: str,
    namespace: str | None = None,
    subresource: str | None = None,
) -> bool:
    args = ["kubectl", "auth", "can-i", verb, resource, f"--as={user}"]
    args += ["-n", namespace] if namespace else []
    args += [f"--subresource={subresource}"] if subresource else []
    res = kube.run(*args, check=False)
    assert res.stdout.strip() in ("yes", "no"), res.stderr
    return res.stdout.strip() == "yes"


# what the operator must be able to do in a namespace it watches
ALLOWED = [
    ("get", "trainingjobs.modelfactory.dev", None),
    ("watch", "modelservices.modelfactory.dev", None),
    ("patch", "trainingjobs.modelfactory.dev", "status"),
    ("update", "modelservices.modelfactory.dev", "status"),
    ("update", "trainingjobs.modelfactory.dev", "finalizers"),
    ("create", "events", None),
    ("create", "events.events.k8s.io", None),
    ("create", "secrets", None),
    ("delete", "secrets", None),
    ("create", "serviceaccounts", None),
    ("create", "services", None),
    ("create", "roles.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", None),
    ("create", "jobs.batch", None),
    ("delete", "jobs.batch", None),
    ("create", "deployments.apps", None),
    ("patch", "deployments.apps", None),
    ("create", "horizontalpodautoscalers.autoscaling", None),
    ("create", "poddisruptionbudgets.policy", None),
    ("create", "rayjobs.ray.io", None),
    ("list", "pods", None),
]
# what it must not do anywhere
REFUSED_NAMESPACED = [
    ("create", "pods", None),
    ("create", "pods", "exec"),
    ("delete", "pods", None),
    ("get", "configmaps", None),
    ("create", "trainingjobs.modelfactory.dev", None),
    ("delete", "modelservices.modelfactory.dev", None),
    ("escalate", "roles.rbac.authorization.k8s.io", None),
    ("bind", "roles.rbac.authorization.k8s.io", None),
    ("impersonate", "serviceaccounts", None),
    ("create", "persistentvolumeclaims", None),
    ("create", "rayclusters.ray.io", None),
]
REFUSED_CLUSTER = [
    ("delete", "nodes", None),
    ("get", "nodes", None),
    ("create", "namespaces", None),
    ("delete", "namespaces", None),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ("create", "persistentvolumes", None),
]


def check_permissions(kube: Any, user: str, namespace: str) -> None:
    wrong = [
        f"cannot {v} {r}{'/' + s if s else ''}"
        for v, r, s in ALLOWED
        if not can_i(kube, user, v, r, namespace, s)
    ]
    wrong += [
        f"can {v} {r}{'/' + s if s else ''}"
        for v, r, s in REFUSED_NAMESPACED
        if can_i(kube, user, v, r, namespace, s)
    ]
    wrong += [
        f"can {v} {r} (cluster)" for v, r, s in REFUSED_CLUSTER if can_i(kube, user, v, r, None, s)
    ]
    assert can_i(kube, user, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not wrong, f"{user} in {namespace}: " + "; ".join(wrong)


def run_charts_as(kube: Any, khelm: Helm, user: str, namespace: str) -> None:
    """The operator's identity runs the workload charts as Helm releases: release Secrets,
    `lookup`, every object they render — including the training Role and RoleBinding, which
    the API server only lets it create because it holds what they grant."""
    for chart, upgrades in (
        ("training-job", [("--set", "mode=rayjob", "--set", "workers=1")]),
        ("model-service", [("--set", "modelVersion=2")]),
    ):
        release = chart.replace("-", "")
        upgrade = [
            "upgrade",
            "--install",
            release,
            str(CHARTS / chart),
            "-n",
            namespace,
            "--kube-as-user",
            user,
            "-f",
            str(example_values(chart)),
            "--set",
            "owner=null",
            *NO_VOLUMES,
        ]
        khelm.run(*upgrade)
        for extra in upgrades:
            khelm.run(*upgrade, *extra)
        history = khelm.run(
            "history", release, "-n", namespace, "--kube-as-user", user, "-o", "json"
        ).stdout
        assert [r["status"] for r in json.loads(history)] == ["superseded", "deployed"]
        khelm.run("uninstall", release, "-n", namespace, "--kube-as-user", user)
    left = kube.kubectl_json(
        "get",
        "serviceaccount,role,rolebinding,job,rayjob,deployment,service,hpa,pdb",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/managed-by=modelfactory-operator",
    )["items"]
    left += kube.kubectl_json("get", "secrets", "-n", namespace, "-l", "owner=helm")["items"]
    assert not left, [f"{o['kind']}/{o['metadata']['name']}" for o in left]


def test_operator_rbac_cluster_wide(
    kube: Any,
    khelm: Helm,
    rayjob_crd: None,
    crds: Any,
    namespace: str,
    extra_namespaces: tuple[str, str],
) -> None:
    watched, other = extra_namespaces
    with install_operator(kube, khelm, namespace, watch=[]) as user:
        check_permissions(kube, user, watched)
        check_permissions(kube, user, other)
        assert can_i(kube, user, "list", "namespaces")
        run_charts_as(kube, khelm, user, watched)


def test_operator_rbac_namespaced(
    kube: Any,
    khelm: Helm,
    rayjob_crd: None,
    crds: Any,
    namespace: str,
    extra_namespaces: tuple[str, str],
) -> None:
    watched, unwatched = extra_namespaces
    with install_operator(kube, khelm, namespace, watch=[watched]) as user:
        check_permissions(kube, user, watched)
        refused = [f"{v} {r}" for v, r, s in ALLOWED if can_i(kube, user, v, r, unwatched, s)]
        assert not refused, f"allowed outside the watched namespace: {refused}"
        # kopf follows namespaces even when it watches a fixed list (read-only).
        assert can_i(kube, user, "list", "namespaces")
        assert not can_i(kube, user, "delete", "namespaces")
        assert not can_i(kube, user, "list", "secrets", "kube-system")
        run_charts_as(kube, khelm, user, watched)
