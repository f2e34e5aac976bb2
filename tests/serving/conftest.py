"""Fixtures for the serving tests: small trained models written as real artifacts, and a real
`modelfactory-serve` process on 127.0.0.1."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelfactory_artifacts.metadata import (
    COMPLETE_MARKER,
    METADATA_FILENAME,
    MODEL_FILENAME,
    ArtifactMetadata,
    sha256_hex,
)
from modelfactory_artifacts.profile import build_profile
from modelfactory_artifacts.read import load_artifact
from modelfactory_serving.model import ModelRuntime

SERVE = Path(sys.executable).parent / "modelfactory-serve"


@dataclass
class Artifact:
    uri: str
    digest: str
    features: list[str]
    classes: list[Any] | None
    estimator: Any
    X: Any  # training inputs (array or DataFrame)


def write_artifact(
    directory: Path,
    estimator: Any,
    X: Any,
    y: Any,
    features: list[dict[str, str]],
    task: str,
    version: int = 1,
) -> Artifact:
    """Fit `estimator` and write a complete version directory the way the training runtime
    does: model.skops, metadata.json (validated), then _COMPLETE."""
    estimator.fit(X, y)
    directory.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(estimator)
    (directory / MODEL_FILENAME).write_bytes(data)
    classes = None if task == "regression" else np.asarray(estimator.classes_).tolist()
    meta = ArtifactMetadata(
        version=version,
        createdAt=datetime.datetime.now(datetime.UTC).isoformat(),
        task=task,  # type: ignore[arg-type]
        modelSha256=sha256_hex(data),
        libraries={
            "python": sys.version.split()[0],
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": sio.__name__,
        },
        features=features,  # type: ignore[arg-type]
        target={"name": "y", "classes": classes},  # type: ignore[arg-type]
        estimator=type(estimator).__name__,
        metric="accuracy" if task != "regression" else "r2",
        metrics={"cv_mean": 0.9, "cv_std": 0.01},
        bestParams={},
        trials=[],
    )
    (directory / METADATA_FILENAME).write_bytes(meta.to_json())
    (directory / COMPLETE_MARKER).write_text("")
    return Artifact(
        str(directory), meta.digest, [f["name"] for f in features], classes, estimator, X
    )


def add_profile(artifact: Artifact, y: Any, kinds: dict[str, str] | None = None) -> Artifact:
    """Give a written artifact the reference profile of its training data (as the trainer
    does), with a new digest."""
    path = Path(artifact.uri) / METADATA_FILENAME
    meta = ArtifactMetadata.model_validate_json(path.read_text())
    frame = (
        artifact.X
        if isinstance(artifact.X, pd.DataFrame)
        else pd.DataFrame(artifact.X, columns=artifact.features)
    )
    kinds = kinds or {f: "numeric" for f in artifact.features}
    predictions = artifact.estimator.predict(
        frame if isinstance(artifact.X, pd.DataFrame) else artifact.X
    )
    target_kind = "numeric" if meta.task == "regression" else "categorical"
    meta.profile = build_profile(
        frame, kinds, target=pd.Series(y), target_kind=target_kind, predictions=predictions
    )
    path.write_bytes(meta.to_json())
    artifact.digest = meta.digest
    return artifact


def numeric_data(
    n: int = 300, n_features: int = 4, classes: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    score = X[:, 0] + 0.5 * X[:, 1]
    if classes == 2:
        y = (score > 0).astype(int)
    else:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


def numeric_features(n: int) -> list[dict[str, str]]:
    return [{"name": f"x{i}", "dtype": "float64", "kind": "numeric"} for i in range(n)]


def mixed_frame(n: int = 300, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(50, 15, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    y = np.where((df["age"] > 40) ^ (df["city"] == "nice"), "yes", "no")
    return df, y


MIXED_FEATURES = [
    {"name": "age", "dtype": "float64", "kind": "numeric"},
    {"name": "income", "dtype": "float64", "kind": "numeric"},
    {"name": "city", "dtype": "object", "kind": "categorical"},
]


def mixed_pipeline(handle_unknown: str = "error") -> Pipeline:
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("imp", SimpleImputer()), ("sc", StandardScaler())]),
                ["age", "income"],
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("imp", SimpleImputer(strategy="most_frequent")),
                        ("oh", OneHotEncoder(handle_unknown=handle_unknown)),
                    ]
                ),
                ["city"],
            ),
        ]
    )
    return Pipeline([("pre", pre), ("est", LogisticRegression())])


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    root = tmp_path_factory.mktemp("artifacts")
    X, y = numeric_data(n_features=4)
    X3, y3 = numeric_data(n_features=4, classes=3, seed=2)
    Xr, _ = numeric_data(n_features=3, seed=3)
    df, ym = mixed_frame()
    return {
        "lr": write_artifact(
            root / "lr" / "1", LogisticRegression(), X, y, numeric_features(4), "binary"
        ),
        "rf": write_artifact(
            root / "rf" / "1",
            RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0),
            X3,
            y3,
            numeric_features(4),
            "multiclass",
        ),
        "ridge": write_artifact(
            root / "ridge" / "3",
            Ridge(),
            Xr,
            Xr @ [1.0, 2.0, -1.0],
            numeric_features(3),
            "regression",
            version=3,
        ),
        "mixed": write_artifact(
            root / "mixed" / "1", mixed_pipeline(), df, ym, MIXED_FEATURES, "binary"
        ),
    }


@pytest.fixture(scope="session")
def runtimes(artifacts: dict[str, Artifact]) -> dict[str, ModelRuntime]:
    """The hand-made artifacts loaded and warmed up as a server does."""
    out = {}
    for name, art in artifacts.items():
        rt = ModelRuntime(load_artifact(art.uri, art.digest), name)
        rt.warm_up(8)
        out[name] = rt
    return out


def _v2_request(
    data: list[Any], shape: list[int], datatype: str = "FP64", name: str = "input-0", **extra: Any
) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra}


@pytest.fixture
def v2_request() -> Callable[..., dict[str, Any]]:
    """A v2 inference request of one tensor: v2_request(data, shape, datatype, name, **body)."""
    return _v2_request


@pytest.fixture
def hostile_strings() -> list[str]:
    """A 50 KB body's worth of short strings and one long one (numpy would size every element
    to the longest)."""
    return ["a"] * 2_499 + ["b" * 40_000]


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A forest whose predict of 10,000 rows takes a good fraction of a second (~0.3 s)."""
    X, y = numeric_data(n=3000, n_features=4)
    return write_artifact(
        tmp_path_factory.mktemp("slow") / "1",
        RandomForestClassifier(n_estimators=600, max_depth=14, random_state=0),
        X,
        y,
        numeric_features(4),
        "binary",
    )


# ---------------------------------------------------------------------------- server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    name: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait(self, ready: bool = True, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        path = "/v2/health/ready" if ready else "/v2/health/live"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"server not {'ready' if ready else 'live'} in {timeout}s:\n{self.logs()}"
        )

    def wait_state(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"condition not reached in {timeout}s:\n{self.logs()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launch(
    tmp: Path,
    name: str,
    uri: str,
    digest: str | None = None,
    wait_ready: bool = True,
    **settings: Any,
) -> Server:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MF_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {"MF_MODEL_NAME": name, "MF_MODEL_URI": uri, "MF_HOST": "127.0.0.1", "MF_PORT": str(port)}
    )
    if digest:
        env["MF_MODEL_DIGEST"] = digest
    for key, value in settings.items():
        env[f"MF_{key.upper()}"] = str(value)
    log_path = tmp / f"server-{name}-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([str(SERVE)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", name, log_path, env)
    try:
        server.wait(ready=wait_ready)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: Any, **kw: Any) -> Server:
        server = launch(tmp_path, *args, **kw)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Like start_server, but the servers live for the whole module."""
    started: list[Server] = []
    tmp = tmp_path_factory.mktemp("servers")

    def start(*args: Any, **kw: Any) -> Server:
        server = launch(tmp, *args, **kw)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def _assert_not_ready(server: Server, reason: str, fragment: str) -> None:
    url = server.url
    server.wait_state(
        lambda: httpx.get(url + "/v2/health/ready").json().get("reason") not in (None, "Loading")
    )
    assert httpx.get(url + "/v2/health/live").status_code == 200
    r = httpx.get(url + "/v2/health/ready")
    assert r.status_code == 503 and r.json()["reason"] == reason, r.text
    r = httpx.get(url + f"/v2/models/{server.name}/ready")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["ready"] is False and body["reason"] == reason and fragment in body["message"]
    r = httpx.get(url + f"/v1/models/{server.name}")
    assert r.status_code == 503 and r.json()["ready"] is False
    r = httpx.post(
        url + f"/v2/models/{server.name}/infer",
        json={
            "inputs": [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}
            ]
        },
    )
    assert r.status_code == 503 and r.json()["reason"] == reason
    r = httpx.post(url + f"/v1/models/{server.name}:predict", json={"instances": [[1, 2]]})
    assert r.status_code == 503
    assert httpx.get(url + f"/v2/models/{server.name}").status_code == 503
    errors = [
        rec
        for rec in server.log_records()
        if rec.get("level") == "error" and rec.get("reason") == reason
    ]
    assert errors and fragment in errors[0]["msg"], server.logs()
    assert server.proc.poll() is None  # still up


@pytest.fixture
def assert_not_ready() -> Callable[[Server, str, str], None]:
    """assert_not_ready(server, reason, fragment): the server is up, live, not ready for
    `reason` on every route, and logged why (the message holds `fragment`)."""
    return _assert_not_ready


def in_ci() -> bool:
    """Under CI a missing host tool fails the test that needs it instead of skipping it."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
