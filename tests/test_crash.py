"""``kill -9`` of a real control plane during a loop of acknowledged writes, then a restart on
the same home: nothing acknowledged is lost, the SQLite files are sound, the deployments come
back ACTIVE with the same RIDs, and the home lock died with the process. On SQLite in the home
and on a real PostgreSQL server."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Server, deploy_reference, query, start_server, wait_for
from pg import server_args

from liveml_ext.client import Client

ROUNDS = (7, 12, 18)  # acknowledged writes before each kill


@dataclass
class Acked:
    """What the server acknowledged (and the one write in flight at the kill, which may or
    may not have landed)."""

    objectives: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    submissions: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    in_flight: str = ""
    count: int = 0


class Writer(threading.Thread):
    """Writes objectives, releases, tags, submissions, a deployment and deployment updates
    until the server goes away, recording each write once it is answered."""

    def __init__(self, client: Client, rid: str, model: Path, round_: int, acked: Acked) -> None:
        super().__init__(daemon=True)
        self.c, self.rid, self.model, self.round, self.acked = client, rid, model, round_, acked
        self.error: Exception | None = None

    def run(self) -> None:
        a, r = self.acked, self.round
        for i in range(10_000):
            name = f"{r}-{i}"
            try:
                if i == 5 and r == 0:
                    a.in_flight = "deployment"
                    doc = self.c.deploy("crash", name="Second", replicas=1, environment="staging")
                    a.deployments.append(doc["rid"])
                elif i % 16 == 3:
                    a.in_flight = f"s-{name}"
                    self.c.submit("crash", self.model, name=f"s-{name}")
                    a.submissions.append(f"s-{name}")
                elif i % 4 == 0:
                    a.in_flight = f"o-{name}"
                    self.c.create_objective(f"o-{name}")
                    a.objectives.append(f"o-{name}")
                elif i % 4 == 1:
                    a.in_flight = f"d-{name}"
                    self.c.update(self.rid, description=f"d-{name}")
                    a.descriptions.append(f"d-{name}")
                elif i % 4 == 2:
                    a.in_flight = f"{r}.{i}"
                    self.c.release("crash", "v1", f"{r}.{i}")
                    a.releases.append(f"{r}.{i}")
                else:
                    version = "1.1" if a.tags[-1] == "1.0" else "1.0"  # a move, each time
                    a.in_flight = version
                    self.c.tag("crash", version, "STAGING")
                    a.tags.append(version)
            except Exception as exc:  # noqa: BLE001 - the server was killed: unacknowledged
                self.error = exc
                return
            a.count += 1


def check(server: Server, acked: Acked) -> None:
    """Every acknowledged write is there."""
    c = server.client
    objectives = {o["name"] for o in c.api("GET", "objectives")["data"]}
    assert set(acked.objectives) <= objectives
    versions = {r["version"] for r in c.releases("crash")}
    assert set(acked.releases) <= versions
    assert set(acked.submissions) <= {s["name"] for s in c.submissions("crash")}
    rids = {d["rid"] for d in c.deployments()}
    assert set(acked.deployments) <= rids
    description = c.deployment(acked.deployments[0])["description"]
    assert description in {*acked.descriptions[-1:], acked.in_flight}, description
    history = [h["version"] for h in c.api("GET", "objectives/crash/tag-history")["data"]
               if h["tag"] == "STAGING"]
    assert len(history) >= len(acked.tags)  # acked.tags starts with the first release's
    assert history[-1] in {*acked.tags[-1:], acked.in_flight}


def sound(home: Path) -> None:
    """``PRAGMA integrity_check`` of every SQLite database in the home."""
    for path in home.glob("*.db"):
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], path
        finally:
            db.close()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_kill_9_during_writes_loses_no_acknowledged_write(request, house_model, tmp_path, store):
    home = tmp_path / "home"
    args = server_args(request, store)
    server = start_server(home, args=args)
    try:
        first = deploy_reference(server, house_model, "crash", "First", replicas=1,
                                 environment="staging")
        server.client.release("crash", "v1", "1.1")
        acked = Acked(deployments=[first["rid"]], tags=["1.0"])
        for round_, kill_after in enumerate(ROUNDS):
            writer = Writer(server.client, first["rid"], house_model, round_, acked)
            start = acked.count
            writer.start()
            wait_for(lambda w=writer, n=start + kill_after: acked.count >= n or not w.is_alive(),
                     timeout=60, what="acknowledged writes")
            assert writer.is_alive(), f"the writer stopped before the kill: {writer.error!r}"
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
            writer.join(60)
            assert not writer.is_alive()

            server = start_server(home, args=args)  # the lock died with the killed process
            sound(home)
            check(server, acked)
            for rid in acked.deployments:
                doc = server.client.wait(rid, timeout=120)
                assert doc["status"]["state"] == "ACTIVE" and doc["rid"] == rid
            assert query(server, first["rid"]).status_code == 200
    finally:
        server.stop()
