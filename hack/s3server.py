#!/usr/bin/env python3
"""A real S3-compatible object store for Model Factory's tests: MinIO, built from Go modules.

    hack/s3server.py build      # build MinIO into the cache (idempotent, keyed by version)
    hack/s3server.py up         # build if needed, start it, create the test bucket
    hack/s3server.py status     # endpoint, node endpoint, bucket and credentials as JSON
    hack/s3server.py env        # AWS_* lines for `eval`
    hack/s3server.py down       # stop it and forget its state (data included)
    hack/s3server.py leftovers  # a MinIO from this cache still running? exit 1 if so

Why MinIO: it is the S3-compatible server most clusters and CI systems use, it implements the
conditional writes the trainer's version claims rely on (PutObject with If-None-Match: *), and
its whole server is one Go module (github.com/minio/minio, no replace directives, Go 1.24) that
the module proxy serves. MinIO tags releases as RELEASE.<date>, which Go does not read as
versions, so hack/miniobin pins a pseudo-version of a commit. versitygw (posix backend) builds
the same way and was the fallback; moto is a mock, not a server. Cold cost, measured on 2 busy
cores: about 1 minute to download its modules (1.3 GB) and 6 minutes to compile with an empty
build cache; warm, nothing (the binary is cached by version).

`up` listens on 0.0.0.0 so pods on the real node reach it at the node's address (10.250.0.1,
see hack/node.py) as well as 127.0.0.1 from this machine. Standard library only, like
hack/cluster.py, which builds it with the other binaries and stops it on `down`.

The state (pid, port, credentials, data) lives in MF_S3_DIR (default: s3server/ in the
cluster's state directory, MF_CLUSTER_DIR or <cache>/cluster).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostprocs import cache_dir, free_port, pid_alive

HERE = Path(__file__).resolve().parent

# The commit of github.com/minio/minio that hack/miniobin/go.mod pins (keep the two in step).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_MODULE = "github.com/minio/minio"
NODE_ADDRESS = "10.250.0.1"  # the real node's address on this machine (hack/node.py)
DEFAULT_PORT = 9780
BUCKET = "modelfactory"
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    """A failure with a message meant for the person at the terminal."""


def state_dir() -> Path:
    """Beside the cluster it serves, so `hack/cluster.py down` of one cluster (MF_CLUSTER_DIR)
    stops that cluster's S3 server and no other."""
    if os.environ.get("MF_S3_DIR"):
        return Path(os.environ["MF_S3_DIR"])
    return Path(os.environ.get("MF_CLUSTER_DIR") or cache_dir() / "cluster") / "s3server"


def binary() -> Path:
    return cache_dir() / "bin" / f"minio-{MINIO_VERSION}" / "minio"


def log(msg: str) -> None:
    print(f"[s3server] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------- build


def build() -> Path:
    """Build MinIO inside hack/miniobin (go.mod + go.sum committed) into the cache, once."""
    dest = binary()
    if dest.exists():
        return dest
    if shutil.which("go") is None:
        raise S3ServerError("the Go toolchain is missing: MinIO is built from the Go module proxy")
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    tmp = dest.parent.with_name(dest.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logfile = logs / "build-minio.log"
    cmd = ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "minio"), MINIO_MODULE]
    started = time.monotonic()
    with logfile.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.call(
            cmd, cwd=HERE / "miniobin", env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if rc != 0:
        raise S3ServerError(
            f"building MinIO failed (exit {rc}); last lines of {logfile}:\n" + tail(logfile)
        )
    tmp.rename(dest.parent)
    log(f"built minio {MINIO_VERSION} in {time.monotonic() - started:.1f}s")
    return dest


# ----------------------------------------------------------------------------- S3 calls


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_request(
    endpoint: str, access_key: str, secret_key: str, method: str, path: str, body: bytes = b""
) -> urllib.request.Request:
    """An AWS Signature Version 4 request (path-style), enough for bucket calls."""
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = endpoint.split("://", 1)[1].rstrip("/")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, path, "", "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _sign(
        _sign(_sign(_sign(f"AWS4{secret_key}".encode(), day), REGION), "s3"), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]
    return urllib.request.Request(
        endpoint.rstrip("/") + path, data=body or None, headers=headers, method=method
    )


def create_bucket(endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
    req = signed_request(endpoint, access_key, secret_key, "PUT", f"/{bucket}")
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        if exc.code == 409 and "BucketAlreadyOwnedByYou" in text:
            return
        raise S3ServerError(f"creating bucket {bucket}: HTTP {exc.code}: {text}") from exc


def live(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/minio/health/live", timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


# ----------------------------------------------------------------------------- server


@dataclass
class S3Server:
    """One running MinIO: what clients need to reach it."""

    pid: int
    port: int
    listen: str
    endpoint: str  # from this machine
    node_endpoint: str  # from pods on the real node
    access_key: str
    secret_key: str
    bucket: str
    region: str
    data_dir: str
    log_file: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables botocore (and so s3fs) read."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
        }

    def stop(self, timeout: float = 15) -> None:
        stop_pid(self.pid, timeout)


def stop_pid(pid: int, timeout: float = 15) -> None:
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start(
    directory: Path,
    port: int = 0,
    listen: str = "127.0.0.1",
    bucket: str = BUCKET,
    timeout: float = 60,
) -> S3Server:
    """Start MinIO with its data under `directory` (builds it first if needed), wait until it
    answers, and create `bucket`. port 0 picks a free one."""
    exe = build()
    port = port or free_port(listen if listen != "0.0.0.0" else "127.0.0.1")
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    access_key = "mf" + secrets.token_hex(6)
    secret_key = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    env.update(
        {
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_BROWSER": "off",  # no web console
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
            "MINIO_REGION": REGION,
            "HOME": str(directory),
        }
    )
    log_file = directory / "minio.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "server",
                "--quiet",
                "--address",
                f"{listen}:{port}",
                "--config-dir",
                str(directory / "config"),
                str(data),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    node_host = NODE_ADDRESS if listen == "0.0.0.0" else listen
    server = S3Server(
        pid=proc.pid,
        port=port,
        listen=listen,
        endpoint=endpoint,
        node_endpoint=f"http://{node_host}:{port}",
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        region=REGION,
        data_dir=str(data),
        log_file=str(log_file),
    )
    deadline = time.monotonic() + timeout
    while not live(endpoint):
        if proc.poll() is not None:
            raise S3ServerError(
                f"MinIO exited with {proc.returncode}; last lines of {log_file}:\n{tail(log_file)}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise S3ServerError(f"MinIO did not answer within {timeout:.0f}s:\n{tail(log_file)}")
        time.sleep(0.2)
    while True:
        try:
            create_bucket(endpoint, access_key, secret_key, bucket)
            return server
        except S3ServerError as exc:
            # Live is not ready: it answers 503 XMinioServerNotInitialized for a moment.
            if "HTTP 503" not in str(exc) or time.monotonic() > deadline:
                server.stop()
                raise
        except BaseException:
            server.stop()
            raise
        time.sleep(0.2)


# ----------------------------------------------------------------------------- state


def state_file() -> Path:
    return state_dir() / "s3server.json"


def running() -> S3Server | None:
    try:
        server = S3Server(**json.loads(state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if pid_alive(server.pid) else None


def up(port: int = DEFAULT_PORT) -> S3Server:
    found = running()
    if found is not None and live(found.endpoint):
        log(f"already running at {found.endpoint} (pid {found.pid})")
        return found
    down()
    server = start(state_dir(), port=port, listen="0.0.0.0")
    path = state_file()
    path.write_text(json.dumps(asdict(server), indent=2))
    path.chmod(0o600)
    log(f"MinIO at {server.endpoint} (pods: {server.node_endpoint}), bucket {server.bucket}")
    return server


def down() -> bool:
    """Stop the server `up` started and remove its state; True when one was running."""
    found = running()
    if found is not None:
        found.stop()
    shutil.rmtree(state_dir(), ignore_errors=True)
    return found is not None


def leftovers() -> list[str]:
    """MinIO processes run from this cache's binary, whoever started them."""
    exe = binary()
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(proc / "exe")) == exe and pid_alive(int(proc.name)):
                left.append(f"S3 server (MinIO) pid {proc.name}")
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build MinIO into the cache")
    start_cmd = sub.add_parser("up", help="start MinIO (builds first if needed)")
    start_cmd.add_argument("--port", type=int, default=DEFAULT_PORT)
    sub.add_parser("status", help="print endpoint and credentials; exit 1 when not running")
    sub.add_parser("env", help="print AWS_* lines for eval")
    sub.add_parser("down", help="stop MinIO and remove its data")
    sub.add_parser("leftovers", help="list MinIO processes still running; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            build()
        elif args.cmd == "up":
            up(args.port)
        elif args.cmd == "status":
            found = running()
            print(json.dumps(asdict(found) if found else {"running": False}, indent=2))
            return 0 if found is not None and live(found.endpoint) else 1
        elif args.cmd == "env":
            found = running()
            if found is None:
                raise S3ServerError("not running: hack/s3server.py up")
            for key, value in found.env().items():
                print(f"export {key}={value}")
        elif args.cmd == "down":
            log("stopped MinIO" if down() else "nothing to stop")
        elif args.cmd == "leftovers":
            left = leftovers()
            print("\n".join(left) or "nothing left")
            return 1 if left else 0
    except S3ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
