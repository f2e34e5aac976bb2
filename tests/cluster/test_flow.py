"""A user's cluster path, for real: helm install, kubectl apply, predictions through a Service.

The tests run in order and share one operator and one namespace: train, serve, retrain under
traffic, autoscale, survive the operator's pod being killed, and clean up.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from tests.cluster.conftest import EXAMPLES, IRIS_ROWS, NODE, RealCluster, claim_directory
from tests.conftest import eventually
from tests.serving.conftest import numeric_data, numeric_features, write_artifact
from tests.serving.hostile import write_hostile

pytestmark = pytest.mark.cluster
DIGEST = "sha256:" + "ef" * 32


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), 4],
                "datatype": "FP64",
                "data": [x for r in rows for x in r],
            }
        ]
    }


def pods(rc: RealCluster, selector: str) -> list[dict[str, Any]]:
    return list(rc.kube.kubectl_json("get", "pods", "-n", rc.ns, "-l", selector)["items"])


def test_operator_runs_in_a_pod_with_its_chart_rbac(real_cluster: RealCluster) -> None:
    rc = real_cluster
    pod = rc.operator_pod()
    assert pod["spec"]["nodeName"] == NODE
    assert pod["spec"]["serviceAccountName"].endswith("modelfactory")
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    sa = f"system:serviceaccount:{rc.operator_ns}:{pod['spec']['serviceAccountName']}"
    can = rc.kube.run(
        "kubectl", "auth", "can-i", "create", "deployments", "-n", rc.ns, f"--as={sa}", check=False
    ).stdout.strip()
    assert can == "yes"
    # Namespaced install: nothing outside the watched namespace.
    cannot = rc.kube.run(
        "kubectl",
        "auth",
        "can-i",
        "create",
        "deployments",
        "-n",
        "default",
        f"--as={sa}",
        check=False,
    ).stdout.strip()
    assert cannot == "no"


def test_restricted_pod_security_is_enforced(real_cluster: RealCluster) -> None:
    rc = real_cluster
    ns = rc.kube.kubectl_json("get", "namespace", rc.ns)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    res = rc.kube.run(
        "kubectl", "run", "privileged", "-n", rc.ns, "--image=x", "--privileged", check=False
    )
    assert res.returncode != 0 and "violates PodSecurity" in res.stderr


def trainingjob(name: str, storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": "sklearn://iris"},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "output": {"storageUri": storage},
        },
    }


def test_a_pods_own_filesystem_is_refused_as_storage(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.apply(trainingjob("local-path", "file:///tmp/models/local-path"))
    tj = eventually(
        lambda: (s := rc.status("tj", "local-path")).get("phase") == "Failed" and s,
        timeout=60,
        what="Failed",
    )
    failed = next(c for c in tj["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.output.storageUri" in failed["message"]
    assert "pvc://" in failed["message"]
    # No Job for it (other tests' runs share the namespace).
    assert (
        rc.kube.kubectl_json(
            "get", "jobs", "-n", rc.ns, "-l", "app.kubernetes.io/instance=local-path"
        )["items"]
        == []
    )
    rc.kubectl("delete", "tj", "local-path", "-n", rc.ns)


def test_a_claim_that_cannot_bind_is_named_in_the_status(real_cluster: RealCluster) -> None:
    """ReadWriteMany is refused by the node's provisioner (as by kind's, EBS's and PD's)."""
    rc = real_cluster
    rc.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "rwx"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    rc.apply(trainingjob("rwx", "pvc://rwx/models"))

    def reason() -> str:
        conditions = rc.status("tj", "rwx").get("conditions") or []
        text = " ".join(c.get("message") or "" for c in conditions)
        return text if "ReadWriteOnce" in text else ""

    # The claim's events reach the status at the latest with the next look at a waiting run
    # (a minute).
    message = eventually(reason, timeout=240, interval=2, what="the claim's problem in a condition")
    assert "PersistentVolumeClaim rwx is Pending" in message
    rc.kubectl("delete", "tj", "rwx", "-n", rc.ns)
    rc.kubectl("delete", "pvc", "rwx", "-n", rc.ns, "--wait=false")


def test_iris_example_trains_in_a_pod_and_serves_from_pods(real_cluster: RealCluster) -> None:
    rc = real_cluster
    started = time.monotonic()
    rc.kubectl("apply", "-n", rc.ns, "-f", str(EXAMPLES / "iris-classifier.yaml"))
    try:
        tj = eventually(
            lambda: (s := rc.status("tj", "iris")).get("phase") == "Succeeded" and s,
            timeout=600,
            interval=2,
            what="iris trained",
        )
    except AssertionError:
        print(rc.diagnose())
        raise
    assert tj["model"]["version"] == 1 and tj["model"]["uri"].startswith("pvc://")
    assert tj["score"] >= 0.9
    training = pods(rc, "app.kubernetes.io/component=training")
    assert training and all(p["spec"]["nodeName"] == NODE for p in training)

    eventually(
        lambda: rc.status("msvc", "iris").get("phase") == "Ready",
        timeout=300,
        interval=2,
        what="iris served",
    )
    url = rc.cluster_ip("iris")
    first = eventually(
        lambda: httpx.post(f"{url}/v2/models/iris/infer", json=v2_body(IRIS_ROWS), timeout=10),
        timeout=60,
        what="first prediction",
    )
    print(
        f"\nkubectl apply of the iris example to the first prediction through the Service: "
        f"{time.monotonic() - started:.1f}s"
    )
    assert first.status_code == 200 and first.json()["outputs"][0]["data"] == [0, 2, 1]
    v1 = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=10)
    assert v1.status_code == 200 and v1.json()["predictions"] == [0, 2, 1]
    # The training pod compiled the model; the serving pods run it with ONNX Runtime.
    meta = httpx.get(f"{url}/v2/models/iris", timeout=10).json()
    assert meta["platform"] == "onnx" and meta["parameters"]["onnx"] == "verified", meta

    servers = pods(rc, "app.kubernetes.io/component=serving")
    assert servers
    for p in servers:
        assert p["spec"]["nodeName"] == NODE
        c = p["spec"]["containers"][0]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c)
        assert c["resources"]["limits"]["memory"]
        status = p["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0
    logs = rc.kubectl("logs", "-n", rc.ns, servers[0]["metadata"]["name"])
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records, logs[-2000:]


def test_a_tampered_artifact_is_refused_and_the_status_says_why(real_cluster: RealCluster) -> None:
    """Someone with write access to the model volume puts a model that would run os.system
    there, and a ModelService names it with its own digest: the server in the pod refuses it,
    stays not ready, and the ModelService says which type was refused."""
    rc = real_cluster
    art, refused = write_hostile(
        claim_directory(rc, "modelfactory-models") / "tampered" / "1", "os-system"
    )
    rc.apply(
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "tampered"},
            "spec": {
                "model": {"uri": "pvc://modelfactory-models/tampered/1", "digest": art.digest}
            },
        }
    )
    try:

        def refused_in_status() -> dict[str, Any]:
            ready = next(
                (
                    c
                    for c in rc.status("msvc", "tampered").get("conditions") or []
                    if c["type"] == "Ready"
                ),
                {},
            )
            return ready if "UntrustedType" in ready.get("message", "") else {}

        ready = eventually(
            refused_in_status,
            timeout=180,
            interval=2,
            what="the refusal in the ModelService's status",
        )
        assert ready["status"] == "False" and refused in ready["message"], ready
        servers = pods(rc, "app.kubernetes.io/instance=tampered")
        assert servers and not any(
            c.get("ready") for p in servers for c in p["status"].get("containerStatuses") or []
        )
    finally:
        rc.kubectl("delete", "msvc", "tampered", "-n", rc.ns, "--wait=false")


def rollout_service(name: str, art: Any, rollout: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": art.uri, "digest": art.digest},
            "replicas": {"min": 2, "max": 2},
            "resources": {"cpu": "100m", "memory": "384Mi"},
            "monitoring": {"drift": {"enabled": False}},
            "rollout": rollout,
        },
    }


def test_canary_in_pods_promotes_a_good_version_and_rolls_back_a_bad_one(
    real_cluster: RealCluster,
) -> None:
    """Two stable pods send the canary's share to its own pods through its Service; the
    operator, in its pod, reads every server's figures through the API server's pod proxy."""
    rc = real_cluster
    root = claim_directory(rc, "modelfactory-models") / "rollout"
    X, y = numeric_data(n_features=4)
    X3, y3 = numeric_data(n_features=3, seed=5)
    arts = {
        v: write_artifact(
            root / str(v), LogisticRegression(), X, y, numeric_features(4), "binary", version=v
        )
        for v in (1, 2)
    }
    arts[3] = write_artifact(
        root / "3", LogisticRegression(), X3, y3, numeric_features(3), "binary", version=3
    )
    for v, art in arts.items():
        art.uri = f"pvc://modelfactory-models/rollout/{v}"
    canary = {
        "strategy": "Canary",
        "steps": [25, 100],
        "stepIntervalSeconds": 5,
        "minRequests": 20,
        "analysis": {"failureThreshold": 1},
    }

    def on(version: int) -> dict[str, Any] | None:
        s = rc.status("msvc", "canary")
        r = s.get("rollout") or {}
        return (
            s
            if (
                s.get("phase") == "Ready"
                and r.get("phase") in ("Stable", "Promoted", "RolledBack")
                and (r.get("stable") or {}).get("digest") == arts[version].digest
                and s.get("readyReplicas") == 2
            )
            else None
        )

    rc.apply(rollout_service("canary", arts[1], canary))
    try:
        eventually(lambda: on(1), timeout=300, interval=2, what="canary service on version 1")
        url = rc.cluster_ip("canary")
        failures: list[tuple[float, str]] = []
        answers: dict[str, int] = {}
        stop = threading.Event()

        def client() -> None:
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "data": [0.3, 1.0, -0.5, 2.0],
                    }
                ]
            }
            while not stop.is_set():
                try:
                    # A new connection each time: the Service spreads them over both pods.
                    r = httpx.post(f"{url}/v2/models/canary/infer", json=body, timeout=10)
                except httpx.HTTPError as exc:
                    failures.append((time.monotonic(), repr(exc)))
                    continue
                if r.status_code == 200:
                    version = r.json()["model_version"]
                    answers[version] = answers.get(version, 0) + 1
                else:
                    failures.append((time.monotonic(), str(r.status_code)))
                time.sleep(0.01)

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            rc.apply(rollout_service("canary", arts[2], canary))
            progressing = eventually(
                lambda: (
                    (s := rc.status("msvc", "canary")).get("rollout", {}).get("phase")
                    == "Progressing"
                    and s
                ),
                timeout=60,
                interval=1,
                what="canary progressing",
            )
            assert {t["role"]: t["weight"] for t in progressing["traffic"]} == {
                "stable": 75,
                "canary": 25,
            }
            candidates = pods(
                rc,
                "app.kubernetes.io/name=modelfactory-serving-candidate,"
                "app.kubernetes.io/instance=canary",
            )
            assert candidates and all(p["spec"]["nodeName"] == NODE for p in candidates)
            promoted = eventually(lambda: on(2), timeout=300, interval=2, what="promoted")
            good = dict(answers)
            assert not failures, failures[:5]
            assert good.get("1", 0) > 20 and good.get("2", 0) > 20, good

            rc.apply(rollout_service("canary", arts[3], canary))
            rolled_back = eventually(
                lambda: (
                    (s := rc.status("msvc", "canary")).get("rollout", {}).get("phase")
                    == "RolledBack"
                    and s
                ),
                timeout=300,
                interval=1,
                what="rolled back",
            )
            at = time.monotonic()
            eventually(lambda: on(2), timeout=300, interval=2, what="stable again")
            time.sleep(3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert promoted["rollout"]["phase"] == "Promoted"
        assert "error rate" in rolled_back["rollout"]["message"], rolled_back["rollout"]
        # The bad version failed only its share of requests, with 400 (its schema differs),
        # and only while the rollout ran: once the status says RolledBack, no stable server
        # sends it a request any more (the rollback rolls them first, then drains them).
        assert failures
        other = [(round(t - at, 1), code) for t, code in failures if code != "400" or t > at]
        assert not other, other[:10]
        print(
            f"\ncanary in pods: {good} answered while promoting; {len(failures)} requests "
            f"failed on the bad canary's share"
        )
        left = pods(
            rc,
            "app.kubernetes.io/name=modelfactory-serving-candidate,"
            "app.kubernetes.io/instance=canary",
        )
        eventually(
            lambda: (
                not [
                    p
                    for p in pods(
                        rc,
                        "app.kubernetes.io/name=modelfactory-serving-candidate,"
                        "app.kubernetes.io/instance=canary",
                    )
                    if not p["metadata"].get("deletionTimestamp")
                ]
            ),
            timeout=120,
            interval=2,
            what=f"candidate pods gone ({len(left)})",
        )
    except AssertionError:
        print(rc.diagnose())
        raise
    finally:
        rc.kubectl("delete", "msvc", "canary", "-n", rc.ns, "--wait=false")


def test_retrain_rolls_without_failed_requests(real_cluster: RealCluster) -> None:
    rc = real_cluster
    eventually(lambda: rc.status("msvc", "iris").get("phase") == "Ready", what="iris Ready")
    url = rc.cluster_ip("iris")
    results: dict[str, Any] = {"ok": 0, "failed": 0, "errors": []}
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as session:
            while not stop.is_set():
                try:
                    res = session.post(f"{url}/v2/models/iris/infer", json=v2_body(IRIS_ROWS[:1]))
                    ok = res.status_code == 200
                    if not ok:
                        results["errors"].append(f"{res.status_code} {res.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    results["errors"].append(repr(exc))
                results["ok" if ok else "failed"] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        rc.kubectl("annotate", "tj", "iris", "-n", rc.ns, "modelfactory.dev/retrain=second")
        eventually(
            lambda: rc.status("tj", "iris").get("model", {}).get("version") == 2,
            timeout=600,
            interval=2,
            what="version 2 trained",
        )
        eventually(
            lambda: (
                rc.status("msvc", "iris").get("modelVersion") == 2
                and rc.status("msvc", "iris").get("phase") == "Ready"
            ),
            timeout=300,
            interval=2,
            what="service rolled to version 2",
        )
        time.sleep(5)  # old pods drain and stop while requests keep coming
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    print(f"\nrequests during the roll: {results['ok']} ok, {results['failed']} failed")
    assert results["failed"] == 0, results["errors"][:5]
    assert results["ok"] > 100


def test_hpa_scales_up_on_cpu_and_back_down(real_cluster: RealCluster) -> None:
    rc = real_cluster
    eventually(
        lambda: rc.get("hpa", "iris").get("status", {}).get("currentMetrics"),
        timeout=180,
        interval=3,
        what="HPA sees CPU metrics",
    )
    url = rc.cluster_ip("iris")
    stop = threading.Event()
    body = v2_body(IRIS_ROWS * 60)

    def load() -> None:
        with httpx.Client(timeout=10) as session:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    session.post(f"{url}/v2/models/iris/infer", json=body)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        eventually(
            lambda: rc.get("deployment", "iris")["spec"]["replicas"] > 1,
            timeout=300,
            interval=3,
            what="scaled up under load",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    eventually(
        lambda: rc.get("deployment", "iris")["spec"]["replicas"] == 1,
        timeout=400,
        interval=5,
        what="scaled back down",
    )


def test_operator_pod_killed_during_a_burst_converges(real_cluster: RealCluster) -> None:
    rc = real_cluster
    names = [f"burst-{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        # A claim that does not exist keeps the pods pending: this is about releases.
        rc.apply(
            {
                "apiVersion": "modelfactory.dev/v1alpha1",
                "kind": "ModelService",
                "metadata": {"name": name},
                "spec": {
                    "model": {"uri": f"pvc://absent/{name}/1", "digest": DIGEST},
                    "replicas": {"min": 1, "max": 1},
                },
            }
        )
        if i == 7:
            rc.kubectl(
                "delete",
                "pod",
                "-n",
                rc.operator_ns,
                rc.operator_pod()["metadata"]["name"],
                "--wait=false",
            )

    def releases() -> dict[str, str]:
        out = rc.kube.helm("list", "-n", rc.ns, "-a", "-o", "json").stdout
        return {r["name"]: r["status"] for r in json.loads(out)}

    eventually(
        lambda: all(releases().get(f"msvc-{n}") == "deployed" for n in names),
        timeout=300,
        interval=3,
        what="20 releases deployed",
    )
    deployments = rc.kube.kubectl_json("get", "deployments", "-n", rc.ns)["items"]
    burst = [n for d in deployments if (n := d["metadata"]["name"]).startswith("burst")]
    assert sorted(burst) == names
    for name in names:
        history = json.loads(
            rc.kube.helm("history", f"msvc-{name}", "-n", rc.ns, "-o", "json").stdout
        )
        assert all(h["status"] in ("deployed", "superseded") for h in history), history
    rc.kubectl("delete", "msvc", *names, "-n", rc.ns, "--timeout=180s")
    eventually(
        lambda: not any(r.startswith("msvc-burst") for r in releases()),
        timeout=120,
        what="burst releases removed",
    )


def test_deleting_the_resources_removes_every_child(real_cluster: RealCluster) -> None:
    rc = real_cluster
    rc.kubectl("delete", "tj,msvc", "--all", "-n", rc.ns, "--timeout=180s")

    def leftovers() -> list[str]:
        out = rc.kube.kubectl_json(
            "get",
            "jobs,deployments,services,hpa,pdb,serviceaccounts,roles,rolebindings,secrets,pods",
            "-n",
            rc.ns,
        )["items"]
        # The operator's own Role in the namespace it watches belongs to its release, not to a
        # resource.
        return [
            f"{o['kind']}/{o['metadata']['name']}"
            for o in out
            if o["metadata"]["name"] != "default"
            and (o["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name")
            != "modelfactory"
        ]

    left: list[str] = []

    def gone() -> bool:
        left[:] = leftovers()
        return not left

    try:
        eventually(gone, timeout=180, interval=3, what="no children left")
    except AssertionError as exc:
        raise AssertionError(f"children left: {left}") from exc
