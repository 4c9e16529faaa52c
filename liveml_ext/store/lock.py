"""One control plane per home: an exclusive ``flock`` on ``<home>/liveml.lock``.

The lock lives on a file descriptor kept open for the process's life, so a crash (even
``kill -9``) releases it; the file records who holds it (pid, host, url, start time), as
PostgreSQL's ``postmaster.pid`` does. The file is never removed (removing it would let two
processes lock two different files), only emptied on release.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from ..core.errors import HomeInUse
from .home import FILE_MODE


class HomeLock:
    """``acquire()`` or raise ``HomeInUse`` naming the holder; ``release()`` on stop."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "liveml.lock"
        self.fd: int | None = None
        self.info: dict[str, Any] = {}

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder (``{}`` when empty or unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = self.holder()
            raise HomeInUse(
                f"another liveml control plane runs on the home {self.path.parent} (pid "
                f"{other.get('pid', '?')} on {other.get('host', '?')}, at "
                f"{other.get('url') or 'an URL not yet known'}, since "
                f"{other.get('startedAt', '?')}): use that one (`liveml ls` finds it through "
                "the home), stop it first, or give this server another --home",
                home=str(self.path.parent), **{k: other[k] for k in ("pid", "url") if k in other}
            ) from None
        os.fchmod(fd, FILE_MODE)
        self.fd = fd
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "url": "",
                     "startedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self._write()

    def record_url(self, url: str) -> None:
        """Add the URL the control plane serves at, once it is known."""
        if self.fd is not None:
            self.info["url"] = url
            self._write()

    def _write(self) -> None:
        assert self.fd is not None
        data = json.dumps(self.info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the last descriptor drops the lock
            self.fd = None
