"""What the local cluster's scripts (hack/cluster.py, hack/node.py, hack/s3server.py, ...) need of
this machine (standard library only): the cache directory, a free port, whether a process still
runs, a command's output, a log's last lines."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("MF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelfactory"
    )
    return Path(base)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def run(cmd: list[str], check: bool = True, input_text: str | None = None) -> str:
    """A short command's output; a failure names the command and its error."""
    res = subprocess.run(cmd, capture_output=True, text=True, input=input_text)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
