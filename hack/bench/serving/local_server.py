"""Shared by the serving scripts in this directory: make a Model Factory artifact, start one
`modelfactory-serve` process of a checkout on 127.0.0.1, read its memory from /proc.

Not a test fixture: the scripts print figures, they assert nothing.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SRC_DIRS = ("api/src", "operator/src", "serving/src", "training/src")


def write_artifact(
    dest: Path, estimator: Any, X: Any, y: Any, features: list[dict[str, str]], task: str
) -> tuple[str, str]:
    """Fit `estimator`, write model.skops + metadata.json + _COMPLETE as training does;
    -> (uri, digest)."""
    import numpy as np
    import sklearn
    import skops
    import skops.io as sio

    from modelfactory_artifacts.metadata import (
        COMPLETE_MARKER,
        METADATA_FILENAME,
        MODEL_FILENAME,
        ArtifactMetadata,
        sha256_hex,
    )

    estimator.fit(X, y)
    dest.mkdir(parents=True, exist_ok=True)
    data = sio.dumps(estimator)
    (dest / MODEL_FILENAME).write_bytes(data)
    classes = None if task == "regression" else np.asarray(estimator.classes_).tolist()
    meta = ArtifactMetadata(
        version=1,
        createdAt=datetime.datetime.now(datetime.UTC).isoformat(),
        task=task,  # type: ignore[arg-type]
        modelSha256=sha256_hex(data),
        libraries={
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
        },
        features=features,  # type: ignore[arg-type]
        target={"name": "y", "classes": classes},  # type: ignore[arg-type]
        estimator=type(estimator).__name__,
        metric="accuracy",
        metrics={},
        bestParams={},
        trials=[],
    )
    (dest / METADATA_FILENAME).write_bytes(meta.to_json())
    (dest / COMPLETE_MARKER).write_text("")
    return str(dest), meta.digest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    name: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    name: str, uri: str, digest: str, log_path: Path, root: Path = ROOT, **settings: Any
) -> ServerProcess:
    """One server process running `root`'s code (PYTHONPATH = its src dirs)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MF_")}
    env["PYTHONPATH"] = os.pathsep.join(str(root / d) for d in SRC_DIRS)
    env.update(
        {
            "MF_MODEL_NAME": name,
            "MF_MODEL_URI": uri,
            "MF_MODEL_DIGEST": digest,
            "MF_HOST": "127.0.0.1",
            "MF_PORT": str(port),
            "MF_LOG_LEVEL": "warning",
        }
    )
    env.update({f"MF_{k.upper()}": str(v) for k, v in settings.items()})
    serve = Path(sys.executable).parent / "modelfactory-serve"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(serve)], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready in 120 s: {log_path.read_text()[-2000:]}")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
