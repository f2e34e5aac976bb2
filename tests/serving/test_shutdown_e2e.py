"""SIGTERM under load: the server stops accepting, answers everything it accepted, and exits."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from .conftest import Server, numeric_data, numeric_features, write_artifact

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_load_drops_nothing(
    start_server: Callable[..., Server], tmp_path: Path, workers: int
) -> None:
    X, y = numeric_data(n_features=4, classes=3)
    # Enough trees that predict takes several ms, so requests are queued when SIGTERM lands.
    art = write_artifact(
        tmp_path / "slow" / "1",
        RandomForestClassifier(n_estimators=120, max_depth=6, random_state=0),
        X,
        y,
        numeric_features(4),
        "multiclass",
    )
    server = start_server(
        "slow", art.uri, art.digest, access_log="true", workers=workers, max_batch_size=8
    )
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [1, 4],
                "datatype": "FP64",
                "data": np.asarray(X[0]).tolist(),
            }
        ]
    }
    outcomes: dict[str, tuple[str, float, float]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                rid = uuid.uuid4().hex
                started = time.monotonic()
                try:
                    r = c.post(
                        f"/v2/models/{server.name}/infer", json=body, headers={"x-request-id": rid}
                    )
                    outcome = "ok" if r.status_code == 200 else f"status {r.status_code} {r.text}"
                except httpx.TransportError as e:
                    outcome = f"error {type(e).__name__}"
                with lock:
                    outcomes[rid] = (outcome, started, time.monotonic())
                if outcome.startswith("error"):
                    time.sleep(0.01)

    threads = [threading.Thread(target=client_loop) for _ in range(24)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    sigterm_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=60)
    stop.set()
    for t in threads:
        t.join()

    assert code == 0, server.logs()
    handled = {
        rec["request_id"]: rec["status"]
        for rec in server.log_records()
        if rec.get("logger") == "modelfactory_serving.access" and rec["method"] == "POST"
    }
    ok = [rid for rid, (o, _, _) in outcomes.items() if o == "ok"]
    assert len(ok) > 20
    # Every request the server took in was answered, with 200.
    assert set(handled.values()) == {200}
    unanswered = [rid for rid in handled if outcomes.get(rid, ("missing",))[0] != "ok"]
    assert unanswered == [], [outcomes.get(r) for r in unanswered]
    # No client ever saw an error status; refused connections after the listener closed are fine.
    statuses = {o for o, _, _ in outcomes.values() if o.startswith("status")}
    assert statuses == set()
    # Requests in flight at SIGTERM were finished, not dropped.
    finished_after = [rid for rid in ok if outcomes[rid][1] < sigterm_at < outcomes[rid][2]]
    assert finished_after, "no request was in flight at SIGTERM"
