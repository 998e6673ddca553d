"""Which server has a data dir open: `serve` writes its pid to <data-dir>/server.pid while it runs, so
an offline tool that must not write beside a running server (provgraph receipts migrate: the server
keeps each tenant's receipt dictionary in memory) can refuse. A pid file left by a crash names a
process that is gone, and counts as no server."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PID_FILE", "claim", "release", "running_server"]

PID_FILE = "server.pid"


def claim(data_dir: Path) -> Path:
    """Record this process as the data dir's server; returns the pid file."""
    path = Path(data_dir) / PID_FILE
    path.write_text(f"{os.getpid()}\n")
    return path


def release(path: Path) -> None:
    """Remove the pid file, if it is still this process's."""
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except FileNotFoundError:
        pass


def running_server(data_dir: Path) -> int | None:
    """The pid of a live server that has `data_dir` open, or None."""
    try:
        pid = int((Path(data_dir) / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a crash
    except PermissionError:
        return pid  # alive, another user's
    return pid
