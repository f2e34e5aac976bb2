"""What hack/cluster.py and hack/s3server.py both need of this machine (standard library only):
the cache directory, a free port, whether a process still runs."""

from __future__ import annotations

import os
import socket
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
