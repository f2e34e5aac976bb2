"""The operator chart's Grafana dashboard against a real Prometheus scraping a real model
server: after real traffic (successes, a client error, an admission refusal, enough rows for the
drift monitor), every query of every panel is valid PromQL and returns data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from .conftest import (
    Artifact,
    Server,
    add_profile,
    free_port,
    in_ci,
    numeric_data,
    numeric_features,
    write_artifact,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "modelfactory" / "dashboards" / "modelfactory-serving.json"
NAMESPACE = "ml"
MODEL = "churn"
FEATURES = 4
# What Grafana puts in place of its built-in variables; scrapes are 1 s apart here.
BUILTINS = {"__rate_interval": "30s", "__interval": "1s", "__range": "5m"}


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = (
            "prometheus is missing: apt-get install prometheus (Debian's package; "
            "`python3 hack/cluster.py packages` lists every host package)"
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc, self.url, self.log_path = proc, url, log_path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, expr: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        return dict(r.json())


@pytest.fixture
def start_prometheus(
    prometheus_bin: str, request: pytest.FixtureRequest
) -> Callable[[Server], Prometheus]:
    """Prometheus on a free 127.0.0.1 port scraping one server every second, the way the
    Kubernetes pod discovery labels it (namespace); stopped and its directory removed at the
    end, whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="mf-prometheus-"))
    procs: list[subprocess.Popen[bytes]] = []

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    request.addfinalizer(stop)

    def start(server: Server) -> Prometheus:
        target = server.url.removeprefix("http://")
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "modelfactory-serving",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE}}],
                }
            ],
        }
        # JSON is YAML: no YAML writer needed for the config.
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    shutil.which("prometheus") or "prometheus",
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        procs.append(proc)
        prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}:\n{prom.logs()}")
            try:
                if httpx.get(prom.url + "/-/ready", timeout=2).status_code == 200:
                    return prom
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in 60 s:\n{prom.logs()}")

    return start


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A model whose metadata carries the reference profile the drift monitor compares with."""
    X, y = numeric_data(n=600, n_features=FEATURES)
    artifact = write_artifact(
        tmp_path_factory.mktemp("profiled") / "1",
        LogisticRegression(),
        X,
        y,
        numeric_features(FEATURES),
        "binary",
    )
    return add_profile(artifact, y)


def infer_body(rows: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    ).encode()


def slow_body(body: bytes, pause: float) -> Iterator[bytes]:
    """A request body that arrives in two halves: the request holds its admission slot."""
    yield body[: len(body) // 2]
    time.sleep(pause)
    yield body[len(body) // 2 :]


def send_traffic(server: Server) -> None:
    rng = np.random.default_rng(7)
    url = f"{server.url}/v2/models/{server.name}/infer"
    with server.client() as client:
        # Shifted inputs: the drift monitor has something to find.
        for _ in range(8):
            rows = rng.normal(size=(100, FEATURES))
            rows[:, 0] += 3.0
            r = client.post(url, content=infer_body(rows))
            assert r.status_code == 200, r.text
        r = client.post(
            f"{server.url}/v1/models/{server.name}:predict",
            json={"instances": rng.normal(size=(20, FEATURES)).tolist()},
        )
        assert r.status_code == 200, r.text
        # An invalid request (wrong number of features): a 4xx.
        r = client.post(url, content=infer_body(rng.normal(size=(3, FEATURES + 1))))
        assert 400 <= r.status_code < 500, r.text
    # One request in progress is all the server admits: a second one is refused (503).
    holder: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: holder.append(
            httpx.post(
                url, content=slow_body(infer_body(rng.normal(size=(10, FEATURES))), 2.0), timeout=30
            )
        )
    )
    slow.start()
    try:
        time.sleep(0.7)
        refused = httpx.post(url, content=infer_body(rng.normal(size=(1, FEATURES))), timeout=30)
    finally:
        slow.join()
    assert refused.status_code == 503, refused.text
    assert holder and holder[0].status_code == 200, holder


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)
    assert "$" not in out, out
    return out


def panel_queries(values: dict[str, str]) -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [
        (f"{p['title']} [{t['refId']}]", substitute(t["expr"], values))
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    assert found
    return found


def variable_values(model: str) -> dict[str, str]:
    """The dashboard's variables as Grafana fills them: namespace and model chosen, the
    others at All."""
    dashboard = json.loads(DASHBOARD.read_text())
    values = dict(BUILTINS)
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = var["allValue"]
    values.update({"namespace": NAMESPACE, "model": model})
    return values


def test_every_panel_query_returns_data(
    start_server: Callable[..., Server],
    start_prometheus: Callable[[Server], Prometheus],
    profiled: Artifact,
) -> None:
    server = start_server(
        MODEL,
        profiled.uri,
        profiled.digest,
        max_concurrent_requests=1,
        # Evaluate drift often and on few rows, so it has a verdict within the test.
        drift_evaluate_every=100,
        drift_evaluate_seconds=1,
        drift_min_samples=200,
    )
    prom = start_prometheus(server)
    deadline = time.monotonic() + 30
    while prom.query('up{job="modelfactory-serving"} == 1')["data"]["result"] == []:
        assert time.monotonic() < deadline, f"no successful scrape:\n{prom.logs()}"
        time.sleep(0.5)

    send_traffic(server)

    queries = panel_queries(variable_values(MODEL))
    # Rates need two scrapes after the traffic; drift needs its evaluation.
    deadline = time.monotonic() + 45
    while True:
        answers = {name: prom.query(expr) for name, expr in queries}
        failing = {
            name: a
            for name, a in answers.items()
            if a.get("status") != "success" or not a["data"]["result"]
        }
        if not failing or time.monotonic() > deadline:
            break
        time.sleep(2)
    invalid = {n: a.get("error") for n, a in failing.items() if a.get("status") != "success"}
    assert not invalid, f"invalid queries: {json.dumps(invalid, indent=2)}"
    exported = sorted(
        set(re.findall(r"^(modelfactory_[a-z_]+)", httpx.get(server.url + "/metrics").text, re.M))
    )
    assert not failing, (
        f"{len(failing)} of {len(queries)} panel queries return no data: "
        f"{sorted(failing)}\nthe server exports: {exported}"
    )
    # The variables filter: another model or namespace selects nothing, on every panel (the
    # HTTP metrics too, which carry no model label).
    for values in ({"model": "other"}, {"namespace": "elsewhere"}):
        for name, expr in panel_queries({**variable_values(MODEL), **values}):
            assert prom.query(expr)["data"]["result"] == [], (values, name)
