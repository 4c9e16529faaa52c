"""A real PostgreSQL server for the suite: Debian's ``postgresql``, in a temporary folder.

``initdb`` refuses root, so the cluster belongs to the ``postgres`` system user when the tests
run as root (``runuser -u postgres --``). It listens on a free loopback port (and no Unix
socket in /run), trusts local connections, and is stopped at the end of the session.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from conftest import free_port


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (``.ci/run`` installs it when missing)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name))
    assert found, "PostgreSQL is not installed: `apt-get install postgresql` (see .ci/run)"
    return Path(found[-1]).parent


class PostgreSQL:
    """One running cluster; ``database()`` makes a fresh, empty database and gives its URL."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="liveml-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.proc: subprocess.Popen | None = None

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgreSQL:
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.root), "-c", "fsync=on", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            assert self.proc.poll() is None, (self.root / "postgres.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.1)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, prefix: str = "liveml") -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: PostgreSQL's smart shutdown... then fast
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def server_args(request, kind: str) -> tuple[str, ...]:
    """``liveml server`` arguments for a store of ``kind``: SQLite in the home (none), or a
    fresh database on the session's PostgreSQL (``--database-url``)."""
    if kind == "sqlite":
        return ()
    return ("--database-url", request.getfixturevalue("postgresql").database())


def postgresql_server() -> Iterator[PostgreSQL]:
    """The body of the session fixture ``postgresql`` (tests/conftest.py)."""
    pg = PostgreSQL().start()
    try:
        yield pg
    finally:
        pg.stop()
