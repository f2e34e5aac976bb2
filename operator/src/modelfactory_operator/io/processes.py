"""Processes of the local launcher: started in a group of their own with their exit code
recorded beside them, so an operator restarted meanwhile adopts them instead of starting
duplicates; stopped gracefully, then for good."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def entrypoint(script: str) -> str:
    beside = Path(sys.executable).parent / script
    found = str(beside) if beside.exists() else shutil.which(script)
    if not found:
        raise FileNotFoundError(f"{script} is not installed (pip install the component)")
    return found


def listening_socket() -> socket.socket:
    """A bound, listening 127.0.0.1 socket on a port of the kernel's choice, for a server to
    inherit: choosing a free port and letting the server bind it later races with every other
    process (and server) picking ports meanwhile."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def kill_group(pid: int | None, sig: int = signal.SIGTERM) -> None:
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


async def stop_process(pid: int | None, grace: float = 15.0) -> None:
    kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    kill_group(pid, signal.SIGKILL)


def spawn(
    cmd: list[str],
    env: dict[str, str],
    logfile: Path,
    exitfile: Path,
    pass_fds: tuple[int, ...] = (),
) -> int:
    """Start a process in its own group; a shell wrapper records its exit code for adoption."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    exitfile.unlink(missing_ok=True)
    script = '"$@"; echo $? > "$MF_EXIT_FILE"'
    with logfile.open("ab") as out:
        child = subprocess.Popen(
            ["/bin/sh", "-c", script, "sh", *cmd],
            env={**env, "MF_EXIT_FILE": str(exitfile)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    return child.pid


def read_exit(exitfile: Path) -> int | None:
    try:
        return int(exitfile.read_text().strip())
    except (OSError, ValueError):
        return None


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
