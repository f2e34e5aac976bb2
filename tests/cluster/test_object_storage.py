"""Object storage on the real node: a TrainingJob reads its CSV from s3:// and writes its model
to s3:// of a real S3 server (MinIO, hack/s3server.py) with credentials from a Secret, a
ModelService serves it from s3:// through its Service, and credentials the store refuses give
conditions that say so, with no crash loop.

The server runs on this machine and listens on every address; pods reach it at the node's own
address (10.250.0.1), as they reach the API server.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import s3fs
from sklearn.datasets import load_iris

from tests.cluster.conftest import IRIS_ROWS, NODE, RealCluster
from tests.conftest import eventually, s3server_module

pytestmark = pytest.mark.cluster
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DIGEST = "sha256:" + "ef" * 32


@pytest.fixture(scope="module")
def node_s3(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """MinIO on a free port of every address of this machine, with a fresh bucket."""
    mod = s3server_module()
    try:
        server = mod.start(
            tmp_path_factory.mktemp("node-s3"), listen="0.0.0.0", bucket="mf-cluster"
        )
    except mod.S3ServerError as exc:
        pytest.fail(f"the S3 server (MinIO) did not start:\n{exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prefix(node_s3: Any) -> str:
    """s3://bucket/<id>/ holding the iris CSV (as written by a user, column names and all)."""
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    frame["species"] = iris.target
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    fs = s3fs.S3FileSystem(
        key=node_s3.access_key,
        secret=node_s3.secret_key,
        endpoint_url=node_s3.endpoint,
        skip_instance_cache=True,
    )
    base = f"{node_s3.bucket}/cp-{uuid.uuid4().hex[:6]}"
    fs.pipe_file(f"{base}/data/iris.csv", buf.getvalue().encode())
    return f"s3://{base}"


def secret(name: str, access_key: str, secret_key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": {
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    }


def pod_settings(node_s3: Any, secret_name: str) -> dict[str, Any]:
    """Keys from the Secret (envFrom), the endpoint as a plain variable botocore reads."""
    return {
        "envFrom": [{"secretRef": {"name": secret_name}}],
        "env": [{"name": "AWS_ENDPOINT_URL", "value": node_s3.node_endpoint}],
    }


def trainingjob(name: str, prefix: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelfactory.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"uri": f"{prefix}/data/iris.csv", "target": "species"},
            "model": {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
            },
            "tuning": {
                "algorithm": "grid",
                "cvFolds": 2,
                "searchSpace": {"C": {"values": [1.0, 10.0]}},
            },
            "output": {"storageUri": f"{prefix}/models/{name}"},
            "pod": pod,
        },
    }


def condition(rc: RealCluster, kind: str, name: str, type_: str) -> dict[str, Any]:
    return next(
        (c for c in rc.status(kind, name).get("conditions") or [] if c["type"] == type_), {}
    )


def test_trains_from_s3_to_s3_and_serves_from_s3(
    real_cluster: RealCluster, node_s3: Any, prefix: str
) -> None:
    rc = real_cluster
    rc.apply(secret("s3-credentials", node_s3.access_key, node_s3.secret_key))
    pod = pod_settings(node_s3, "s3-credentials")
    rc.apply(trainingjob("iris-s3", prefix, pod))
    try:
        tj = eventually(
            lambda: (s := rc.status("tj", "iris-s3")).get("phase") in ("Succeeded", "Failed") and s,
            timeout=600,
            interval=2,
            what="iris-s3 trained",
        )
    except AssertionError:
        print(rc.diagnose())
        raise
    assert tj["phase"] == "Succeeded", tj.get("conditions")
    assert tj["model"]["uri"] == f"{prefix}/models/iris-s3/1"
    fs = s3fs.S3FileSystem(
        key=node_s3.access_key,
        secret=node_s3.secret_key,
        endpoint_url=node_s3.endpoint,
        skip_instance_cache=True,
    )
    assert fs.exists(f"{prefix.removeprefix('s3://')}/models/iris-s3/1/_COMPLETE")
    job_pods = rc.kube.kubectl_json(
        "get",
        "pods",
        "-n",
        rc.ns,
        "-l",
        "app.kubernetes.io/instance=iris-s3,app.kubernetes.io/component=training",
    )["items"]
    for p in job_pods:
        c = p["spec"]["containers"][0]
        assert c["envFrom"] == pod["envFrom"]
        assert {"name": "AWS_ENDPOINT_URL", "value": node_s3.node_endpoint} in c["env"]

    rc.apply(
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "iris-s3"},
            "spec": {"model": {"trainingJob": "iris-s3"}, "pod": pod},
        }
    )
    try:
        eventually(
            lambda: rc.status("msvc", "iris-s3").get("phase") == "Ready",
            timeout=300,
            interval=2,
            what="iris-s3 served",
        )
    except AssertionError:
        print(rc.diagnose())
        raise
    ms = rc.status("msvc", "iris-s3")
    assert ms["modelUri"] == tj["model"]["uri"] and ms["modelVersion"] == 1
    url = rc.cluster_ip("iris-s3")
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(IRIS_ROWS), 4],
                "datatype": "FP64",
                "data": [x for r in IRIS_ROWS for x in r],
            }
        ]
    }
    res = eventually(
        lambda: (
            (r := httpx.post(f"{url}/v2/models/iris-s3/infer", json=body, timeout=10)).status_code
            == 200
            and r
        ),
        timeout=60,
        what="a prediction through the Service",
    )
    assert res.json()["outputs"][0]["data"] == [0, 2, 1]
    servers = rc.kube.kubectl_json(
        "get",
        "pods",
        "-n",
        rc.ns,
        "-l",
        "app.kubernetes.io/instance=iris-s3,app.kubernetes.io/component=serving",
    )["items"]
    assert servers and all(p["spec"]["nodeName"] == NODE for p in servers)
    assert all(p["spec"]["containers"][0]["envFrom"] == pod["envFrom"] for p in servers)
    # The node's CPUs are few: the Ray tests after this need them.
    rc.kubectl("delete", "msvc,tj", "iris-s3", "-n", rc.ns, "--timeout=120s")


def test_refused_credentials_say_so_in_the_modelservice(
    real_cluster: RealCluster, node_s3: Any, prefix: str
) -> None:
    rc = real_cluster
    wrong = "wrong-" + uuid.uuid4().hex
    rc.apply(secret("s3-wrong", node_s3.access_key, wrong))
    rc.apply(
        {
            "apiVersion": "modelfactory.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "iris-s3-wrong"},
            # The store refuses the signature before it looks for the object: the test needs
            # neither the version trained above nor its digest.
            "spec": {
                "model": {"uri": f"{prefix}/models/iris-s3/1", "digest": DIGEST},
                "pod": pod_settings(node_s3, "s3-wrong"),
            },
        }
    )
    try:

        def refused() -> dict[str, Any]:
            ready = condition(rc, "msvc", "iris-s3-wrong", "Ready")
            return ready if "StorageAccessDenied" in ready.get("message", "") else {}

        ready = eventually(
            refused,
            timeout=240,
            interval=2,
            what="StorageAccessDenied in the ModelService's Ready condition",
        )
        assert ready["status"] == "False"
        assert "the storage refused the credentials" in ready["message"], ready
        assert f"{prefix}/models/iris-s3/1" in ready["message"]
        assert "MissingArtifact" not in ready["message"]
        assert wrong not in ready["message"]
        servers = rc.kube.kubectl_json(
            "get", "pods", "-n", rc.ns, "-l", "app.kubernetes.io/instance=iris-s3-wrong"
        )["items"]
        assert servers
        for p in servers:
            (status,) = p["status"]["containerStatuses"]
            # Up, not ready, never restarted: no crash loop.
            assert not status["ready"] and status["restartCount"] == 0, status
    finally:
        rc.kubectl("delete", "msvc", "iris-s3-wrong", "-n", rc.ns, "--wait=false")


def test_refused_credentials_fail_the_trainingjob_saying_so(
    real_cluster: RealCluster, node_s3: Any, prefix: str
) -> None:
    rc = real_cluster
    wrong = "wrong-" + uuid.uuid4().hex
    rc.apply(secret("s3-wrong-training", node_s3.access_key, wrong))
    rc.apply(trainingjob("iris-s3-wrong", prefix, pod_settings(node_s3, "s3-wrong-training")))
    try:
        tj = eventually(
            lambda: (
                (s := rc.status("tj", "iris-s3-wrong")).get("phase") in ("Failed", "Succeeded")
                and s
            ),
            timeout=300,
            interval=2,
            what="iris-s3-wrong Failed",
        )
        assert tj["phase"] == "Failed"
        failed = condition(rc, "tj", "iris-s3-wrong", "Failed")
        assert failed["reason"] == "StorageAccessDenied", failed
        assert f"{prefix}/models/iris-s3-wrong" in failed["message"]
        assert "the storage refused the credentials" in failed["message"]
        assert wrong not in failed["message"]
    finally:
        rc.kubectl("delete", "tj", "iris-s3-wrong", "-n", rc.ns, "--wait=false")
